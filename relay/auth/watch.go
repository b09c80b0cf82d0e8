package auth

import (
	"context"
	"crypto/sha256"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/keys"
)

// WatchOptions configure Watch.
type WatchOptions struct {
	// Path is the workers file or directory.
	Path string
	// Every is how often the contents are compared (2s); zero or less
	// means the default, and Check forces a look at once.
	Every time.Duration
	// OnChange is called after a new configuration took effect, with the
	// pins it no longer has, so connections using them can be closed.
	OnChange func(c *Config, removed []keys.Pin)
	Logger   *slog.Logger
	// Registerer receives the reload metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Watcher holds the current workers configuration and reloads it when the
// files change.
type Watcher struct {
	opts    WatchOptions
	current atomic.Pointer[Config]
	seen    [32]byte
	check   chan struct{}
	mu      sync.Mutex // serialises reloads
	stopped chan struct{}

	reloads *prometheus.CounterVec
	workers prometheus.Gauge
}

// Watch loads the configuration (an error if it is bad: nothing starts
// without a valid one) and watches it until ctx ends.
func Watch(ctx context.Context, opts WatchOptions) (*Watcher, error) {
	if opts.Every <= 0 {
		opts.Every = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	files, err := readFiles(opts.Path)
	if err != nil {
		return nil, err
	}
	c, err := parseFiles(files)
	if err != nil {
		return nil, err
	}
	w := &Watcher{
		opts:    opts,
		seen:    hashFiles(files),
		check:   make(chan struct{}, 1),
		stopped: make(chan struct{}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_workers_reloads_total",
			Help: "Reloads of the workers file after its contents changed, by result (ok or error).",
		}, []string{"result"}),
		workers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_workers",
			Help: "Workers in the running workers configuration.",
		}),
	}
	for _, result := range []string{"ok", "error"} {
		w.reloads.WithLabelValues(result) // both exist at zero from the start
	}
	if opts.Registerer != nil {
		for _, col := range []prometheus.Collector{w.reloads, w.workers} {
			if err := opts.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("registering workers metrics: %w", err)
			}
		}
	}
	w.current.Store(c)
	w.workers.Set(float64(len(c.Workers)))
	opts.Logger.Info("workers loaded", "path", opts.Path, "workers", len(c.Workers))
	go w.run(ctx)
	return w, nil
}

// Config is the configuration in force.
func (w *Watcher) Config() *Config { return w.current.Load() }

// Check asks for a look at the files now (on SIGHUP, say).
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

// reload rereads the files and, if their contents changed and parse,
// switches to them.
func (w *Watcher) reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	files, err := readFiles(w.opts.Path)
	var sum [32]byte
	if err == nil {
		sum = hashFiles(files)
	}
	if sum == w.seen {
		return
	}
	w.seen = sum // say so once per change, not on every look
	var c *Config
	if err == nil {
		c, err = parseFiles(files)
	}
	if err != nil {
		w.reloads.WithLabelValues("error").Inc()
		w.opts.Logger.Error("workers file changed but is not valid; keeping the running configuration", "path", w.opts.Path, "err", err)
		return
	}
	old := w.current.Swap(c)
	var removed []keys.Pin
	for p := range old.byPin {
		if _, ok := c.byPin[p]; !ok {
			removed = append(removed, p)
		}
	}
	w.reloads.WithLabelValues("ok").Inc()
	w.workers.Set(float64(len(c.Workers)))
	w.opts.Logger.Info("workers reloaded", "path", w.opts.Path, "workers", len(c.Workers), "pins_removed", len(removed))
	if w.opts.OnChange != nil {
		w.opts.OnChange(c, removed)
	}
}

// hashFiles hashes the names and contents of files.
func hashFiles(files []file) [32]byte {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%d:%s%d:", len(f.name), f.name, len(f.data))
		h.Write(f.data)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
