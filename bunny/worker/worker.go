package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/internal/backoff"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Defaults.
const (
	DefaultConcurrency   = 4
	DefaultShutdownGrace = 30 * time.Second
	DefaultLeaseWait     = 5 * time.Second
	DefaultSettleTimeout = 10 * time.Second
	DefaultCallTimeout   = 10 * time.Second
	DefaultDialTimeout   = 15 * time.Second
	DefaultBackoffMin    = 200 * time.Millisecond
	DefaultBackoffMax    = 30 * time.Second
	// FailBackRetryAfter is the retry delay of a job failed back at
	// shutdown: the smallest relay takes as "set" (zero would mean its
	// backoff), so another worker gets the job at once.
	FailBackRetryAfter = time.Millisecond
)

// Options configure a Worker.
type Options struct {
	// Addr is relay's host:port (UDP), resolved again on every dial: in
	// production the local gateway's forward port.
	Addr string
	// Addrs, instead of Addr, are several ways to relay (the forward
	// ports of several gateways), in order. One connection uses one at a
	// time and moves to the next when it goes silent
	// (client.DefaultPathTimeout), keeping the connection and so every
	// lease answer in flight; a new connection starts on the address the
	// last one used.
	Addrs []string
	// Identity is bunny's QUIC identity; RelayPin is relay's key.
	Identity keys.Identity
	RelayPin keys.Pin
	// Handlers maps each queue to lease from to the handler of its jobs.
	Handlers map[string]handler.Handler
	// Concurrency is the most jobs held at once, running or being
	// reported (DefaultConcurrency).
	Concurrency int
	// ShutdownGrace is how long running jobs get to finish once Run's
	// context ends; zero means DefaultShutdownGrace, negative none.
	ShutdownGrace time.Duration
	// SettleTimeout is how long, after the grace, Run waits for results
	// and failures to reach relay before giving up on them
	// (DefaultSettleTimeout); relay redelivers those jobs.
	SettleTimeout time.Duration
	// LeaseWait is how long one long poll may wait for a job
	// (DefaultLeaseWait).
	LeaseWait time.Duration
	// CallTimeout bounds a heartbeat, complete or fail call
	// (DefaultCallTimeout); a call that times out closes the connection.
	CallTimeout time.Duration
	// DialTimeout bounds one connection attempt (DefaultDialTimeout).
	DialTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential delay
	// between failed attempts to connect or to call.
	BackoffMin, BackoffMax time.Duration
	QUIC                   proto.QUICOptions
	Logger                 *slog.Logger
	// Registerer receives the metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Worker leases jobs from relay and runs them.
type Worker struct {
	opts   Options
	log    *slog.Logger
	m      *metrics
	queues []string
	ran    atomic.Bool
	// leases numbers the lease loop's calls across reconnects, so that
	// relay undoes the leases of an answer lost with a connection.
	leases *client.LeaseSession

	broken chan brokenConn
	status connStatus // for Status (status.go)

	mu         sync.Mutex
	cur        *client.Client        // nil while disconnected
	curChanged chan struct{}         // closed when cur changes
	held       map[leaseKey]*heldJob // by lease: a redelivered job may be held twice
	slotFree   chan struct{}         // a slot was released
	hbWake     chan struct{}         // a job with a new lease duration arrived
}

// leaseKey names one lease: a job's attempt.
type leaseKey struct {
	job     string
	attempt uint32
}

type brokenConn struct {
	c   *client.Client
	err error
}

// heldJob is a lease bunny holds: running, or being reported.
type heldJob struct {
	job    client.Job
	ctx    context.Context // the handler's; ends with the job
	cancel context.CancelCauseFunc
	lost   atomic.Bool
	// cancelSeen: relay asked to cancel, logged once.
	cancelSeen atomic.Bool
}

// Causes a handler is stopped with.
var (
	errLost            = errors.New("relay says the lease is no longer this worker's")
	errCancelRequested = errors.New("cancelled by request")
	errShutdown        = errors.New("bunny is shutting down and the job did not finish within the grace period")
)

// New checks opts and builds a Worker.
func New(opts Options) (*Worker, error) {
	if opts.Addr == "" && len(opts.Addrs) == 0 {
		return nil, errors.New("worker: no relay address")
	}
	if opts.Addr != "" && len(opts.Addrs) > 0 {
		return nil, errors.New("worker: give Addr or Addrs, not both")
	}
	if len(opts.Addrs) == 1 {
		opts.Addr, opts.Addrs = opts.Addrs[0], nil
	}
	if opts.Identity.Leaf == nil {
		return nil, errors.New("worker: no identity (keys.LoadIdentity)")
	}
	if opts.RelayPin == (keys.Pin{}) {
		return nil, errors.New("worker: no relay pin")
	}
	if len(opts.Handlers) == 0 {
		return nil, errors.New("worker: no queues")
	}
	for q, h := range opts.Handlers {
		if err := proto.CheckName("queue", q); err != nil {
			return nil, fmt.Errorf("worker: %w", err)
		}
		if h == nil {
			return nil, fmt.Errorf("worker: queue %q has no handler", q)
		}
	}
	if err := opts.QUIC.Validate(); err != nil {
		return nil, fmt.Errorf("worker: %w", err)
	}
	if opts.Concurrency < 0 {
		return nil, fmt.Errorf("worker: concurrency %d is negative", opts.Concurrency)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if opts.Concurrency == 0 {
		opts.Concurrency = DefaultConcurrency
	}
	switch {
	case opts.ShutdownGrace == 0:
		opts.ShutdownGrace = DefaultShutdownGrace
	case opts.ShutdownGrace < 0:
		opts.ShutdownGrace = 0
	}
	def(&opts.SettleTimeout, DefaultSettleTimeout)
	def(&opts.LeaseWait, DefaultLeaseWait)
	def(&opts.CallTimeout, DefaultCallTimeout)
	def(&opts.DialTimeout, DefaultDialTimeout)
	def(&opts.BackoffMin, DefaultBackoffMin)
	def(&opts.BackoffMax, DefaultBackoffMax)
	if opts.BackoffMax < opts.BackoffMin {
		opts.BackoffMax = opts.BackoffMin
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer, slices.Sorted(maps.Keys(opts.Handlers)))
	if err != nil {
		return nil, err
	}
	w := &Worker{
		opts:       opts,
		log:        opts.Logger,
		m:          m,
		broken:     make(chan brokenConn, 16),
		curChanged: make(chan struct{}),
		held:       map[leaseKey]*heldJob{},
		slotFree:   make(chan struct{}, 1),
		hbWake:     make(chan struct{}, 1),
		leases:     client.NewLeaseSession(),
	}
	for q := range opts.Handlers {
		w.queues = append(w.queues, q)
	}
	sort.Strings(w.queues)
	return w, nil
}

// Ready is nil while connected to relay (for /readyz).
func (w *Worker) Ready() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cur == nil {
		return errors.New("not connected to relay")
	}
	return nil
}

// Held is how many leases the worker holds (running or being reported).
func (w *Worker) Held() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.held)
}

// Run works until ctx ends, then drains (see the package comment) and
// returns nil. It may be called once.
func (w *Worker) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return errors.New("worker: Run called twice")
	}
	// life carries the connection, heartbeats and reports until the
	// drain is over; runCtx is the handlers' and ends when the grace
	// does.
	life, endLife := context.WithCancel(context.WithoutCancel(ctx))
	defer endLife()
	runCtx, stopRuns := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stopRuns(nil)

	var bg sync.WaitGroup
	bg.Go(func() { w.connect(life) })
	bg.Go(func() { w.heartbeats(life) })

	var jobs sync.WaitGroup
	w.leaseLoop(ctx, runCtx, life, &jobs)

	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }()
	n := w.Held()
	w.log.Info("stopping: no more leases; waiting for held jobs", "held", n, "grace", w.opts.ShutdownGrace.String())
	grace := time.NewTimer(w.opts.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		if n := w.Held(); n > 0 {
			w.log.Warn("grace period over; stopping the jobs still running and failing them back to relay", "held", n)
		}
		stopRuns(errShutdown)
		settle := time.NewTimer(w.opts.SettleTimeout)
		defer settle.Stop()
		select {
		case <-done:
		case <-settle.C:
			w.log.Error("could not report every job to relay in time; relay redelivers them when their leases expire",
				"unreported", w.Held(), "settleTimeout", w.opts.SettleTimeout.String())
		}
	}
	endLife()
	// Reports that gave up return promptly once life ends.
	<-done
	bg.Wait()
	w.log.Info("stopped")
	return nil
}

// --- the connection ---

// connect keeps a connection to relay until life ends.
func (w *Worker) connect(life context.Context) {
	connectedBefore := false
	var downSince time.Time
	failures := 0
	path := 0 // where the next connection starts, with several addresses
	for life.Err() == nil {
		dctx, cancel := context.WithTimeout(life, w.opts.DialTimeout)
		start := time.Now()
		c, err := client.Dial(dctx, client.Options{Addr: w.opts.Addr, Addrs: w.opts.Addrs, Start: path,
			Identity: w.opts.Identity, RelayPin: w.opts.RelayPin, QUIC: w.opts.QUIC, Logger: w.log})
		cancel()
		if err != nil {
			if life.Err() != nil {
				return
			}
			failures++
			level, msg, showErr := dialProblem(w.addrs(), err, connectedBefore, time.Since(start))
			if failures > 1 {
				// Once per outage.
				level = slog.LevelDebug
			}
			attrs := []any{"addr", w.addrs(), "attempt", failures}
			if showErr {
				attrs = append(attrs, "err", err)
			}
			w.log.Log(life, level, msg+"; retrying with backoff", attrs...)
			w.status.failed(msg, "", err)
			if !sleep(life, w.backoff(failures)) {
				return
			}
			continue
		}
		failures = 0
		// Log before publishing, so the line precedes anything done over c.
		if connectedBefore {
			w.m.reconnects.Inc()
			w.log.Info("reconnected to relay", "addr", c.Path(), "worker", w.opts.Identity.Name(), "down", time.Since(downSince).Round(time.Millisecond).String(), "held", w.Held())
		} else {
			w.log.Info("connected to relay", "addr", c.Path(), "worker", w.opts.Identity.Name(), "pin", w.opts.Identity.Pin().String())
		}
		connectedBefore = true
		w.status.connected()
		w.setConn(c)
		reason := w.waitBroken(life, c)
		w.setConn(nil)
		path, _ = c.PathIndex()
		_ = c.Close()
		if life.Err() != nil {
			return
		}
		downSince = time.Now()
		attrs := []any{"addr", c.Path(), "reason", reason, "held", w.Held()}
		if h := lostHint(reason); h != "" {
			attrs = append(attrs, "hint", h)
		}
		w.log.Warn("disconnected from relay", attrs...)
		w.status.failed("disconnected from relay at "+c.Path(), lostHint(reason), reason)
	}
}

// addrs is relay's address, or its addresses, for logs.
func (w *Worker) addrs() string {
	if len(w.opts.Addrs) > 0 {
		return strings.Join(w.opts.Addrs, ", ")
	}
	return w.opts.Addr
}

// waitBroken waits until c ends or a call finds it broken, and says why.
func (w *Worker) waitBroken(life context.Context, c *client.Client) error {
	for {
		select {
		case <-c.Done():
			return c.Err()
		case <-life.Done():
			return life.Err()
		case b := <-w.broken:
			if b.c == c {
				return b.err
			}
		}
	}
}

// markBroken tells the connection loop that a call found c unusable.
func (w *Worker) markBroken(c *client.Client, err error) {
	select {
	case w.broken <- brokenConn{c, err}:
	default:
		// The loop is already told; closing makes sure.
		_ = c.Close()
	}
}

func (w *Worker) setConn(c *client.Client) {
	w.mu.Lock()
	w.cur = c
	close(w.curChanged)
	w.curChanged = make(chan struct{})
	w.mu.Unlock()
	if c != nil {
		w.m.connected.Set(1)
	} else {
		w.m.connected.Set(0)
	}
}

// conn returns the connection, waiting for one until ctx ends.
func (w *Worker) conn(ctx context.Context) (*client.Client, error) {
	for {
		w.mu.Lock()
		c, ch := w.cur, w.curChanged
		w.mu.Unlock()
		if c != nil {
			return c, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// backoff is the jittered exponential delay before attempt n+1: half
// fixed, half random, doubling from BackoffMin up to BackoffMax.
func (w *Worker) backoff(n int) time.Duration {
	return backoff.Policy{Base: w.opts.BackoffMin, Max: w.opts.BackoffMax}.Delay(n)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// isConnFailure: the call's outcome is unknown because the connection
// failed, or it timed out (the connection is then suspect).
func isConnFailure(err error) bool {
	return errors.Is(err, client.ErrConnectionLost) || errors.Is(err, context.DeadlineExceeded)
}
