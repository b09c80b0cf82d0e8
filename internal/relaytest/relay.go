package relaytest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/server"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Options shape a test relay.
type Options struct {
	// Worker, if set, is a worker named "bunny" allowed every action on
	// Queues: the common case, written before Workers.
	Worker keys.Identity
	Queues []string
	// Workers are the workers file's other entries.
	Workers []Worker
	// Queue tunes the queue (Store, Registerer and Logger are set here).
	Queue queue.Options
	// Dir holds relay.db and workers.yaml; empty means a new temporary
	// directory.
	Dir    string
	Logger *slog.Logger
	// PacketConn, if set, wraps the relay's UDP socket before the server
	// gets it.
	PacketConn func(net.PacketConn) net.PacketConn
	// DrainTimeout is the server's (500ms).
	DrainTimeout time.Duration
	// Server, if set, adjusts the server's options last.
	Server func(*server.Options)
}

// Relay is a relay running in the test process.
type Relay struct {
	t    testing.TB // nil for a relay from New
	opts Options
	// ID is relay's identity; Pin() goes into a worker's configuration.
	ID      keys.Identity
	Addr    string // host:port, fixed across restarts
	path    string // relay.db
	workers string // workers.yaml
	tempDir string // removed by Close; empty when the caller gave Dir

	watchCancel context.CancelFunc
	watcher     *auth.Watcher
	watchReg    *prometheus.Registry

	mu      sync.Mutex
	st      *store.Bolt
	q       *queue.Queue
	srv     *server.Server
	pc      net.PacketConn
	cancel  context.CancelFunc
	served  chan error
	regs    []*prometheus.Registry // one per run
	running bool
}

// Start runs a relay until the test ends.
func Start(t testing.TB, opts Options) *Relay {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	r, err := New(opts)
	if err != nil {
		t.Fatalf("relaytest: %v", err)
	}
	r.t = t
	t.Cleanup(r.Close)
	return r
}

// New runs a relay without a test; Close stops it.
func New(opts Options) (*Relay, error) {
	r := &Relay{opts: opts, Addr: "127.0.0.1:0"}
	if r.opts.Dir == "" {
		dir, err := os.MkdirTemp("", "relaytest-")
		if err != nil {
			return nil, fmt.Errorf("creating a directory: %w", err)
		}
		r.opts.Dir, r.tempDir = dir, dir
	}
	if r.opts.Logger == nil {
		r.opts.Logger = slog.New(slog.DiscardHandler)
	}
	if r.opts.DrainTimeout <= 0 {
		r.opts.DrainTimeout = 500 * time.Millisecond
	}
	r.path = filepath.Join(r.opts.Dir, "relay.db")
	r.workers = filepath.Join(r.opts.Dir, "workers.yaml")
	err := r.open()
	if err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

func (r *Relay) open() error {
	certPEM, keyPEM, err := keys.GenerateIdentity("relay")
	if err != nil {
		return fmt.Errorf("generating relay's identity: %w", err)
	}
	if r.ID, err = keys.ParseIdentity(certPEM, keyPEM); err != nil {
		return fmt.Errorf("parsing relay's identity: %w", err)
	}
	if err := r.writeWorkers(r.opts.Workers); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.watchCancel, r.watchReg = cancel, prometheus.NewRegistry()
	r.watcher, err = auth.Watch(ctx, auth.WatchOptions{Path: r.workers, Every: time.Hour, Registerer: r.watchReg,
		Logger: r.opts.Logger, OnChange: func(*auth.Config, []keys.Pin) { r.revoke() }})
	if err != nil {
		r.watcher = nil
		return fmt.Errorf("loading the workers file: %w", err)
	}
	return r.start()
}

// Start starts a stopped relay on the same file and address.
func (r *Relay) Start() {
	r.helper()
	if err := r.start(); err != nil {
		r.fatalf("%v", err)
	}
}

func (r *Relay) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		return errors.New("Start on a running relay")
	}
	reg := prometheus.NewRegistry()
	st, err := store.OpenBolt(store.BoltOptions{Path: r.path, Registerer: reg})
	if err != nil {
		return err
	}
	qo := r.opts.Queue
	qo.Store, qo.Registerer, qo.Logger = st, reg, r.opts.Logger
	q, err := queue.Open(context.Background(), qo)
	if err != nil {
		_ = st.Close()
		return err
	}
	so := server.Options{Queue: q, Identity: r.ID, Workers: r.watcher.Config,
		Registerer: reg, Logger: r.opts.Logger, DrainTimeout: r.opts.DrainTimeout}
	if r.opts.Server != nil {
		r.opts.Server(&so)
	}
	srv, err := server.New(so)
	if err != nil {
		_ = q.Close()
		_ = st.Close()
		return err
	}
	// The port may take a moment to be free again after a stop.
	var pc net.PacketConn
	for i := 0; ; i++ {
		pc, err = net.ListenPacket("udp", r.Addr)
		if err == nil || i == 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		_ = q.Close()
		_ = st.Close()
		return fmt.Errorf("listening on %s: %w", r.Addr, err)
	}
	spc := pc
	if r.opts.PacketConn != nil {
		spc = r.opts.PacketConn(pc)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, spc) }()
	r.Addr = srv.Addr().String()
	r.st, r.q, r.srv, r.pc, r.cancel, r.served, r.running = st, q, srv, pc, cancel, served, true
	r.regs = append(r.regs, reg)
	return nil
}

// Stop shuts relay down gracefully: calls in flight are answered (long
// polls with "shutting down") before the socket closes.
func (r *Relay) Stop() { r.stop(false) }

// Kill stops relay abruptly: its socket closes first, so workers hear
// nothing (as with kill -9) until a restarted relay answers their packets
// with a stateless reset. Every acknowledged change is on disk.
func (r *Relay) Kill() { r.stop(true) }

func (r *Relay) stop(abrupt bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		return
	}
	if abrupt {
		_ = r.pc.Close()
	}
	r.cancel()
	select {
	case <-r.served:
	case <-time.After(10 * time.Second):
		r.errorf("Serve did not return within 10s of its context ending")
	}
	_ = r.pc.Close()
	_ = r.q.Close()
	_ = r.st.Close()
	r.running = false
}

// Close kills relay, stops watching its workers file and removes the
// directory New made.
func (r *Relay) Close() {
	r.Kill()
	if r.watcher != nil {
		r.watchCancel()
		<-r.watcher.Done()
	}
	if r.tempDir != "" {
		_ = os.RemoveAll(r.tempDir)
	}
}

// revoke closes the connections of keys the workers file no longer has.
func (r *Relay) revoke() {
	r.mu.Lock()
	srv := r.srv
	r.mu.Unlock()
	if srv != nil {
		srv.Revoke()
	}
}

// Server is the running worker server (nil while stopped).
func (r *Relay) Server() *server.Server {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.srv
}

// Queue is the running relay's queue (to enqueue, get and cancel jobs).
func (r *Relay) Queue() *queue.Queue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.q
}

func (r *Relay) helper() {
	if r.t != nil {
		r.t.Helper()
	}
}

// fatalf fails the test, or panics without one.
func (r *Relay) fatalf(format string, args ...any) {
	if r.t != nil {
		r.t.Helper()
		r.t.Fatalf("relaytest: "+format, args...)
	}
	panic(fmt.Sprintf("relaytest: "+format, args...))
}

func (r *Relay) errorf(format string, args ...any) {
	if r.t != nil {
		r.t.Helper()
		r.t.Errorf("relaytest: "+format, args...)
		return
	}
	r.opts.Logger.Error(fmt.Sprintf("relaytest: "+format, args...))
}
