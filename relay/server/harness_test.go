package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

func identity(t testing.TB, name string) keys.Identity {
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

// workerSpec is one worker of the test's workers file.
type workerSpec struct {
	name   string
	ids    []keys.Identity
	queues map[string]string // queue → "[lease, heartbeat, …]"
}

func workersYAML(ws ...workerSpec) string {
	var b strings.Builder
	b.WriteString("workers:\n")
	for _, w := range ws {
		var pins []string
		for _, id := range w.ids {
			pins = append(pins, id.Pin().String())
		}
		fmt.Fprintf(&b, "  - name: %s\n    pins: [%s]\n    queues:\n", w.name, strings.Join(pins, ", "))
		for q, a := range w.queues {
			fmt.Fprintf(&b, "      %s: %s\n", q, a)
		}
	}
	return b.String()
}

const allActions = "[lease, heartbeat, complete, fail]"

type relayHarness struct {
	t        testing.TB
	relayID  keys.Identity
	workers  string // path of the workers file
	watcher  *auth.Watcher
	st       *store.Bolt
	q        *queue.Queue
	srv      *Server
	reg      *prometheus.Registry
	addr     string
	cancel   context.CancelFunc
	served   chan error
	queueOpt queue.Options
}

type harnessOptions struct {
	queue queue.Options
	// packetConn wraps the server's UDP socket.
	packetConn func(net.PacketConn) net.PacketConn
	logger     *slog.Logger
}

// startRelay runs a relay (store, queue, server) on loopback UDP with the
// given workers, until the test ends.
func startRelay(t testing.TB, ho harnessOptions, ws ...workerSpec) *relayHarness {
	t.Helper()
	dir := t.TempDir()
	h := &relayHarness{t: t, relayID: identity(t, "relay"), workers: filepath.Join(dir, "workers.yaml"), reg: prometheus.NewRegistry(), queueOpt: ho.queue}
	if err := os.WriteFile(h.workers, []byte(workersYAML(ws...)), 0o644); err != nil {
		t.Fatal(err)
	}
	var err error
	h.st, err = store.OpenBolt(store.BoltOptions{Path: filepath.Join(dir, "relay.db"), Registerer: h.reg})
	if err != nil {
		t.Fatal(err)
	}
	qo := ho.queue
	qo.Store, qo.Registerer = h.st, h.reg
	h.q, err = queue.Open(context.Background(), qo)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	log := ho.logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h.watcher, err = auth.Watch(ctx, auth.WatchOptions{Path: h.workers, Every: time.Hour, Registerer: h.reg,
		OnChange: func(*auth.Config, []keys.Pin) { h.srv.Revoke() }})
	if err != nil {
		t.Fatal(err)
	}
	h.srv, err = New(Options{Queue: h.q, Identity: h.relayID, Workers: h.watcher.Config, Registerer: h.reg, Logger: log, DrainTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var spc net.PacketConn = pc
	if ho.packetConn != nil {
		spc = ho.packetConn(pc)
	}
	h.served = make(chan error, 1)
	go func() { h.served <- h.srv.Serve(ctx, spc) }()
	h.addr = h.srv.Addr().String()
	t.Cleanup(func() {
		h.stop()
		_ = pc.Close()
		<-h.watcher.Done()
		_ = h.q.Close()
		_ = h.st.Close()
	})
	return h
}

// stop shuts the server down and waits for Serve to return.
func (h *relayHarness) stop() {
	h.cancel()
	if h.served != nil {
		select {
		case <-h.served:
		case <-time.After(10 * time.Second):
			h.t.Error("Serve did not return within 10s of its context ending")
		}
		h.served = nil
	}
}

// setWorkers rewrites the workers file and waits for the reload.
func (h *relayHarness) setWorkers(ws ...workerSpec) {
	h.t.Helper()
	before := h.watcher.Config()
	if err := os.WriteFile(h.workers, []byte(workersYAML(ws...)), 0o644); err != nil {
		h.t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.watcher.Config() == before {
		if time.Now().After(deadline) {
			h.t.Fatal("the workers file was not reloaded")
		}
		h.watcher.Check()
		time.Sleep(10 * time.Millisecond)
	}
}

func (h *relayHarness) dial(id keys.Identity) *client.Client {
	h.t.Helper()
	c, err := h.dialErr(id, nil)
	if err != nil {
		h.t.Fatalf("dial: %v", err)
	}
	return c
}

func (h *relayHarness) dialErr(id keys.Identity, pc net.PacketConn) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Addr: h.addr, Identity: id, RelayPin: h.relayID.Pin(), PacketConn: pc})
	if err != nil {
		return nil, err
	}
	h.t.Cleanup(func() { _ = c.Close() })
	return c, nil
}

func (h *relayHarness) enqueue(jobs ...queue.NewJob) []store.Job {
	h.t.Helper()
	res, err := h.q.Enqueue(context.Background(), jobs)
	if err != nil {
		h.t.Fatal(err)
	}
	out := make([]store.Job, len(res))
	for i, r := range res {
		out[i] = r.Job
	}
	return out
}

func (h *relayHarness) get(id string) store.Job {
	h.t.Helper()
	j, err := h.q.Get(context.Background(), id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

// metric reads a counter or gauge from the relay's registry.
func (h *relayHarness) metric(name string, labels map[string]string) float64 {
	h.t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				if !hasLabel(m, k, v) {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			}
		}
	}
	return 0
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func waitFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
