package producers

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
)

// WatchOptions configure Watch.
type WatchOptions struct {
	// Path is the producers file (a mounted Secret's file is a symlink
	// kubelet swaps; its contents are compared, so the swap is seen).
	Path string
	// Every is how often the contents are compared (2s); Check forces a
	// look at once.
	Every  time.Duration
	Logger *slog.Logger
	// Registerer receives the reload metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Watcher holds the producers configuration in force and reloads it when
// the file changes. Every request is judged by the configuration in force
// when it arrives, so a removed credential is refused from the next
// request on.
type Watcher struct {
	opts    WatchOptions
	current atomic.Pointer[Config]
	check   chan struct{}
	stopped chan struct{}

	mu   sync.Mutex // serialises reloads; guards seen
	seen [sha256.Size]byte

	reloads   *prometheus.CounterVec
	producers prometheus.Gauge
}

// Watch loads the file (an error if it is bad: relay does not start
// without a valid one) and watches it until ctx ends.
func Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	if opts.Every <= 0 {
		opts.Every = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	data, err := yamlcheck.ReadFile(opts.Path, MaxFileSize)
	if err != nil {
		return nil, fmt.Errorf("producers file: %w", err)
	}
	c, err := Parse(data)
	if err != nil {
		return nil, yamlcheck.InFile(opts.Path, err)
	}
	w := &Watcher{
		opts:    opts,
		seen:    sha256.Sum256(data),
		check:   make(chan struct{}, 1),
		stopped: make(chan struct{}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_producers_reloads_total",
			Help: "Reloads of the producers file after its contents changed, by result (ok or error).",
		}, []string{"result"}),
		producers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_producers",
			Help: "Producers in the running producers configuration.",
		}),
	}
	w.reloads.WithLabelValues("ok")
	w.reloads.WithLabelValues("error")
	if opts.Registerer != nil {
		for _, col := range []prometheus.Collector{w.reloads, w.producers} {
			if err := opts.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("registering producers metrics: %w", err)
			}
		}
	}
	w.install(c)
	go w.run(ctx)
	return w, nil
}

// Config is the configuration in force.
func (w *Watcher) Config() *Config { return w.current.Load() }

// Check asks for a look at the file now (on SIGHUP, say).
func (w *Watcher) Check() {
	select {
	case w.check <- struct{}{}:
	default:
	}
}

// Done is closed when the watcher has stopped.
func (w *Watcher) Done() <-chan struct{} { return w.stopped }

func (w *Watcher) run(ctx context.Context) {
	defer close(w.stopped)
	t := time.NewTicker(w.opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-w.check:
		}
		w.reload()
	}
}

func (w *Watcher) install(c *Config) {
	w.current.Store(c)
	w.producers.Set(float64(len(c.Producers)))
	w.opts.Logger.Info("producers loaded", "path", w.opts.Path, "producers", len(c.Producers))
	if len(c.Producers) == 0 {
		w.opts.Logger.Warn("the producers file lists no producer: the API refuses every request", "path", w.opts.Path)
	}
}

// reload rereads the file and, if its contents changed and parse,
// switches to them.
func (w *Watcher) reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	data, err := yamlcheck.ReadFile(w.opts.Path, MaxFileSize)
	var sum [sha256.Size]byte
	if err == nil {
		sum = sha256.Sum256(data)
	}
	if sum == w.seen {
		return
	}
	w.seen = sum // say so once per change, not on every look
	var c *Config
	if err == nil {
		if c, err = Parse(data); err != nil {
			err = yamlcheck.InFile(w.opts.Path, err)
		}
	}
	if err != nil {
		w.reloads.WithLabelValues("error").Inc()
		w.opts.Logger.Error("producers file changed but is not valid; keeping the running configuration", "path", w.opts.Path, "err", err)
		return
	}
	w.reloads.WithLabelValues("ok").Inc()
	w.install(c)
}
