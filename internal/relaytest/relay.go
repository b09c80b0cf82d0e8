package relaytest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/server"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Options shape a test relay.
type Options struct {
	// Worker is the identity allowed every action on Queues.
	Worker keys.Identity
	Queues []string
	// Queue tunes the queue (Store and Registerer are set here).
	Queue queue.Options
	// Dir holds relay.db; empty means a new temporary directory.
	Dir    string
	Logger *slog.Logger
}

// Relay is a relay running in the test process.
type Relay struct {
	t    testing.TB
	opts Options
	// ID is relay's identity; Pin() goes into bunny's configuration.
	ID   keys.Identity
	Addr string // host:port, fixed across restarts
	path string
	cfg  *auth.Config

	mu      sync.Mutex
	st      *store.Bolt
	q       *queue.Queue
	pc      net.PacketConn
	cancel  context.CancelFunc
	served  chan error
	regs    []*prometheus.Registry
	running bool
}

// Start runs a relay until the test ends.
func Start(t testing.TB, opts Options) *Relay {
	t.Helper()
	if opts.Dir == "" {
		opts.Dir = t.TempDir()
	}
	certPEM, keyPEM, err := keys.GenerateIdentity("relay")
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.ParseIdentity(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "workers:\n  - name: bunny\n    pins: [%s]\n    queues:\n", opts.Worker.Pin())
	for _, q := range opts.Queues {
		fmt.Fprintf(&b, "      %s: [lease, heartbeat, complete, fail]\n", q)
	}
	cfg, err := auth.Parse("workers.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Relay{t: t, opts: opts, ID: id, path: filepath.Join(opts.Dir, "relay.db"), cfg: cfg, Addr: "127.0.0.1:0"}
	r.Start()
	t.Cleanup(r.Kill)
	return r
}

// Start starts a stopped relay on the same file and address.
func (r *Relay) Start() {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.running {
		r.t.Fatal("relaytest: Start on a running relay")
	}
	reg := prometheus.NewRegistry()
	st, err := store.OpenBolt(store.BoltOptions{Path: r.path, Registerer: reg})
	if err != nil {
		r.t.Fatal(err)
	}
	qo := r.opts.Queue
	qo.Store, qo.Registerer, qo.Logger = st, reg, r.opts.Logger
	q, err := queue.Open(context.Background(), qo)
	if err != nil {
		_ = st.Close()
		r.t.Fatal(err)
	}
	srv, err := server.New(server.Options{Queue: q, Identity: r.ID, Workers: func() *auth.Config { return r.cfg },
		Registerer: reg, Logger: r.opts.Logger, DrainTimeout: 500 * time.Millisecond})
	if err != nil {
		r.t.Fatal(err)
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
		r.t.Fatalf("relaytest: listening on %s: %v", r.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ctx, pc) }()
	r.Addr = srv.Addr().String()
	r.st, r.q, r.pc, r.cancel, r.served, r.running = st, q, pc, cancel, served, true
	r.regs = append(r.regs, reg)
}

// Kill stops relay abruptly: its socket closes first, so workers hear
// nothing (as with kill -9) until a restarted relay answers their packets
// with a stateless reset. Every acknowledged change is on disk.
func (r *Relay) Kill() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.running {
		return
	}
	_ = r.pc.Close()
	r.cancel()
	select {
	case <-r.served:
	case <-time.After(10 * time.Second):
		r.t.Error("relaytest: Serve did not return within 10s")
	}
	_ = r.q.Close()
	_ = r.st.Close()
	r.running = false
}

// Queue is the running relay's queue (to enqueue, get and cancel jobs).
func (r *Relay) Queue() *queue.Queue {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.q
}

// Enqueue adds jobs and returns their ids.
func (r *Relay) Enqueue(jobs ...queue.NewJob) []string {
	r.t.Helper()
	res, err := r.Queue().Enqueue(context.Background(), jobs)
	if err != nil {
		r.t.Fatal(err)
	}
	ids := make([]string, len(res))
	for i, e := range res {
		ids[i] = e.Job.ID
	}
	return ids
}

// Get reads a job.
func (r *Relay) Get(id string) store.Job {
	r.t.Helper()
	j, err := r.Queue().Get(context.Background(), id)
	if err != nil {
		r.t.Fatal(err)
	}
	return j
}

// WaitTerminal waits until every job has ended (bounded by d) and returns
// them.
func (r *Relay) WaitTerminal(d time.Duration, ids ...string) []store.Job {
	r.t.Helper()
	deadline := time.Now().Add(d)
	for {
		out := make([]store.Job, len(ids))
		done := true
		for i, id := range ids {
			out[i] = r.Get(id)
			done = done && out[i].State.Terminal()
		}
		if done {
			return out
		}
		if time.Now().After(deadline) {
			var open []string
			for _, j := range out {
				if !j.State.Terminal() {
					open = append(open, fmt.Sprintf("%s:%s(attempt %d)", j.ID, j.State, j.Attempt))
				}
			}
			r.t.Fatalf("relaytest: %d jobs not finished after %s: %s", len(open), d, strings.Join(open, " "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Counter sums a counter over every run of relay (each restart has its
// own registry), for the series whose labels include labels.
func (r *Relay) Counter(name string, labels map[string]string) float64 {
	r.t.Helper()
	r.mu.Lock()
	regs := append([]*prometheus.Registry(nil), r.regs...)
	r.mu.Unlock()
	var sum float64
	for _, reg := range regs {
		mfs, err := reg.Gather()
		if err != nil {
			r.t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != name {
				continue
			}
			for _, m := range mf.GetMetric() {
				if hasLabels(m, labels) && m.Counter != nil {
					sum += m.Counter.GetValue()
				}
			}
		}
	}
	return sum
}

func hasLabels(m *dto.Metric, want map[string]string) bool {
	for k, v := range want {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == k && l.GetValue() == v {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// Identity makes a worker identity.
func Identity(t testing.TB, name string) keys.Identity {
	t.Helper()
	certPEM, keyPEM, err := keys.GenerateIdentity(name)
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.ParseIdentity(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
