package filewatch

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultEvery is how often the files are compared when Options.Every is
// zero.
const DefaultEvery = 2 * time.Second

// Options configure Watch for a configuration of type T read as content
// of type C (the bytes of one file, or the files of a directory).
type Options[C, T any] struct {
	// What names the configuration in logs ("workers", "producers").
	What string
	// Path is what Read reads, for logs.
	Path string
	// Every is how often the contents are compared (DefaultEvery when
	// zero or less); Check forces a look at once.
	Every  time.Duration
	Logger *slog.Logger
	// Read reads the content and a digest of it: an unchanged digest
	// means nothing to do.
	Read func() (C, [32]byte, error)
	// Parse turns content into a configuration, or says why it cannot.
	Parse func(C) (T, error)
	// Count is the number of entries in a configuration, for the gauge.
	Count func(T) int
	// Installed is called, under the reload lock, after a configuration
	// took effect (old is the zero T at the first load).
	Installed func(old, c T, first bool)
	// Metric prefixes the metrics: <Metric>_reloads_total{result} and the
	// gauge <Metric>. Registerer receives them; nil registers none.
	Metric     string
	GaugeHelp  string
	Registerer prometheus.Registerer
}

// Watcher holds the configuration in force.
type Watcher[C, T any] struct {
	opts    Options[C, T]
	current atomic.Pointer[T]
	check   chan struct{}
	stopped chan struct{}

	mu   sync.Mutex // serialises reloads; guards seen
	seen [32]byte

	reloads *prometheus.CounterVec
	entries prometheus.Gauge
}

// Watch loads the configuration (an error if it is bad: nothing starts
// without a valid one) and watches it until ctx ends.
func Watch[C, T any](ctx context.Context, opts Options[C, T]) (*Watcher[C, T], error) {
	if opts.Every <= 0 {
		opts.Every = DefaultEvery
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	content, sum, err := opts.Read()
	if err != nil {
		return nil, err
	}
	c, err := opts.Parse(content)
	if err != nil {
		return nil, err
	}
	w := &Watcher[C, T]{
		opts:    opts,
		seen:    sum,
		check:   make(chan struct{}, 1),
		stopped: make(chan struct{}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: opts.Metric + "_reloads_total",
			Help: fmt.Sprintf("Reloads of the %s file after its contents changed, by result (ok or error).", opts.What),
		}, []string{"result"}),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: opts.Metric,
			Help: opts.GaugeHelp,
		}),
	}
	for _, result := range []string{"ok", "error"} {
		w.reloads.WithLabelValues(result) // both exist at zero from the start
	}
	if opts.Registerer != nil {
		for _, col := range []prometheus.Collector{w.reloads, w.entries} {
			if err := opts.Registerer.Register(col); err != nil {
				return nil, fmt.Errorf("registering %s metrics: %w", opts.What, err)
			}
		}
	}
	var zero T
	w.install(zero, c, true)
	go w.run(ctx)
	return w, nil
}

// Config is the configuration in force.
func (w *Watcher[C, T]) Config() T { return *w.current.Load() }

// Check asks for a look at the files now (on SIGHUP, say).
func (w *Watcher[C, T]) Check() {
	select {
	case w.check <- struct{}{}:
	default:
	}
}

// Done is closed when the watcher has stopped.
func (w *Watcher[C, T]) Done() <-chan struct{} { return w.stopped }

func (w *Watcher[C, T]) run(ctx context.Context) {
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

func (w *Watcher[C, T]) install(old, c T, first bool) {
	w.current.Store(&c)
	w.entries.Set(float64(w.opts.Count(c)))
	if w.opts.Installed != nil {
		w.opts.Installed(old, c, first)
	}
}

// reload rereads the content and, if it changed and parses, switches to
// it.
func (w *Watcher[C, T]) reload() {
	w.mu.Lock()
	defer w.mu.Unlock()
	content, sum, err := w.opts.Read()
	if err != nil {
		sum = [32]byte{}
	}
	if sum == w.seen {
		return
	}
	w.seen = sum // say so once per change, not on every look
	var c T
	if err == nil {
		c, err = w.opts.Parse(content)
	}
	if err != nil {
		w.reloads.WithLabelValues("error").Inc()
		w.opts.Logger.Error(w.opts.What+" file changed but is not valid; keeping the running configuration", "path", w.opts.Path, "err", err)
		return
	}
	w.reloads.WithLabelValues("ok").Inc()
	w.install(*w.current.Load(), c, false)
}
