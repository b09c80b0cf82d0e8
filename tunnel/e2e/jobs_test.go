package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/netns"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/api"
)

const (
	bunnyAdmin   = "127.0.0.1:9091"
	handlerAddr  = "127.0.0.1:8090"
	faultJobs    = 10_000
	submitPerSec = 200
)

// handler is the jobs' handler, inside "aks": bunny POSTs each payload and
// gets its SHA-256 back. It counts how often each payload ran.
type handler struct {
	mu    sync.Mutex
	runs  map[string]int
	times []time.Time // when each run began
	all   atomic.Int64
}

func (c *clusters) startHandler() *handler {
	c.t.Helper()
	h := &handler{runs: map[string]int{}}
	var ln net.Listener
	if err := netns.In(c.aks, func() (err error) { ln, err = net.Listen("tcp", handlerAddr); return err }); err != nil {
		c.t.Fatal(err)
	}
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.runs[string(b)]++
		h.times = append(h.times, time.Now())
		h.mu.Unlock()
		h.all.Add(1)
		_, _ = io.WriteString(w, digest(b))
	})}
	go func() { _ = srv.Serve(ln) }()
	c.t.Cleanup(func() { srv.Close() })
	return h
}

func digest(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// startBunny runs bunny in "aks", reaching relay through the AKS
// gateway's forward port.
func (c *clusters) startBunny() { c.startBunnyAt("127.0.0.1:7443") }

// startBunnyAt runs bunny with relay.address set to addrs (one host:port
// or a YAML list of them).
func (c *clusters) startBunnyAt(addrs string) {
	c.t.Helper()
	conf := filepath.Join(c.dir, "bunny.yaml")
	writeFile(c.t, conf, fmt.Sprintf(`
relay:
  address: %s
  pin: %s
identity:
  certFile: %s
  keyFile: %s
admin:
  listen: %s
concurrency: 32
shutdownGrace: 5s
queues:
  - name: e2e
    http:
      url: http://%s/job
      timeout: 10s
`, addrs, c.relayPin, c.bunnyCert, c.bunnyKey, bunnyAdmin, handlerAddr))
	c.bunny = c.startIn(c.aks, "bunny", bin(c.t, "bunny"), "run", "--config", conf, "--log-format", "json")
	c.waitReady(c.aks, bunnyAdmin)
}

// producer submits jobs at a steady pace, each with an idempotency key, so
// a batch retried after relay died is not enqueued twice.
type producer struct {
	c     *clusters
	mu    sync.Mutex
	want  map[string]string // job id → expected result
	sent  atomic.Int64
	retry atomic.Int64
	done  chan struct{}
	stop  chan struct{} // closed: stop after the batch being sent
	err   error
}

func (c *clusters) produce(ctx context.Context, n, perSec int) *producer {
	p := &producer{c: c, want: map[string]string{}, done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(p.done)
		const batch = 20
		tick := time.NewTicker(time.Second * batch / time.Duration(perSec))
		defer tick.Stop()
		for i := 0; i < n; i += batch {
			reqs := make([]api.JobRequest, 0, batch)
			for k := i; k < min(n, i+batch); k++ {
				key := fmt.Sprintf("job-%05d", k)
				reqs = append(reqs, api.JobRequest{Queue: "e2e", PayloadText: key, IdempotencyKey: key})
			}
			// Retry while relay is away (killed, restarting): bounded.
			var jobs []api.Job
			var err error
			for try := 0; try < 120; try++ {
				bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				jobs, err = c.apiClient.EnqueueBatch(bctx, reqs)
				cancel()
				if err == nil || ctx.Err() != nil {
					break
				}
				p.retry.Add(1)
				time.Sleep(500 * time.Millisecond)
			}
			if err != nil {
				p.err = fmt.Errorf("submitting jobs %d…: %w", i, err)
				return
			}
			p.mu.Lock()
			for k, j := range jobs {
				p.want[j.ID] = digest([]byte(reqs[k].PayloadText))
			}
			p.mu.Unlock()
			p.sent.Add(int64(len(jobs)))
			select {
			case <-tick.C:
			case <-p.stop:
				return
			case <-ctx.Done():
				p.err = ctx.Err()
				return
			}
		}
	}()
	return p
}

// verifyJobs waits (up to wait) until relay's store holds n succeeded
// jobs, then checks that it holds exactly the n jobs p submitted, each
// succeeded with the right result, and that the handler saw each payload.
// It returns how many jobs took more than one attempt and how many
// payloads ran more than once.
func (c *clusters) verifyJobs(ctx context.Context, p *producer, h *handler, n int, wait time.Duration) (retried, twice int) {
	t := c.t
	t.Helper()
	testutil.EventuallyEvery(t, wait, 100*time.Millisecond, "every job succeeded", func() bool {
		got, err := c.succeeded(ctx)
		return err == nil && got >= n
	})
	jobs, err := c.jobs(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(jobs) != n || len(p.want) != n {
		t.Fatalf("relay holds %d jobs, %d submitted; want %d", len(jobs), len(p.want), n)
	}
	for _, j := range jobs {
		exp, ok := p.want[j.ID]
		switch {
		case !ok:
			t.Errorf("job %s was not submitted by the test", j.ID)
		case j.State != "succeeded":
			t.Errorf("job %s is %s (%s)", j.ID, j.State, j.LastError)
		case string(j.Result) != exp:
			t.Errorf("job %s: result %q, want %q", j.ID, j.Result, exp)
		}
		if j.Attempt > 1 {
			retried++
			if retried <= 5 {
				t.Logf("job %s took attempt %d (%s)", j.ID, j.Attempt, j.LastError)
			}
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, runs := range h.runs {
		if runs > 1 {
			twice++
		}
	}
	if len(h.runs) != n {
		t.Errorf("the handler saw %d distinct payloads, want %d", len(h.runs), n)
	}
	return retried, twice
}

// succeeded counts the queue's succeeded jobs in relay's store.
func (c *clusters) succeeded(ctx context.Context) (int, error) {
	jobs, err := c.jobs(ctx, "succeeded")
	return len(jobs), err
}

// jobs lists the queue's jobs in a state ("" for all).
func (c *clusters) jobs(ctx context.Context, state string) ([]api.Job, error) {
	var all []api.Job
	after := ""
	for page := 0; page < 100; page++ {
		r, err := c.apiClient.List(ctx, api.ListOptions{Queue: "e2e", State: state, After: after, Limit: 1000})
		if err != nil {
			return nil, err
		}
		all = append(all, r.Jobs...)
		if after = r.Next; after == "" {
			return all, nil
		}
	}
	return nil, fmt.Errorf("more than 100 pages of jobs")
}

// TestClusterJobsSurviveFaults runs 10,000 jobs from relay in "eks" to
// bunny in "aks" through the two gateways while, one after another, relay
// is killed (SIGKILL) and restarted, each gateway is killed and restarted,
// the link between the clouds goes down for 15 s, and bunny is killed
// mid-job and restarted. Every job must end succeeded, exactly once, with
// the right result. The EKS gateway dials out: it has no listening port.
func TestClusterJobsSurviveFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the fault suite takes minutes; skipped with -short")
	}
	c := startClusters(t)
	h := c.startHandler()
	c.startBunny()

	// Zero inbound exposure on the EKS side: no unconnected UDP socket
	// of the gateway's (relay's own QUIC port is in the list).
	ss := netns.MustRun(t, "ip", "netns", "exec", c.eks, "ss", "-H", "-u", "-l", "-n", "-p")
	if strings.Contains(ss, "tunnel") {
		t.Errorf("the EKS gateway has a listening UDP socket:\n%s", ss)
	}
	t.Logf("listening UDP sockets in eks (relay's only):\n%s", ss)

	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	p := c.produce(ctx, faultJobs, submitPerSec)

	// progress waits until n more jobs have succeeded than before.
	progress := func(what string, n int) {
		t.Helper()
		base, err := c.succeeded(ctx)
		for try := 0; err != nil && try < 30; try++ {
			time.Sleep(time.Second)
			base, err = c.succeeded(ctx)
		}
		if err != nil {
			t.Fatalf("%s: reading relay's store: %v", what, err)
		}
		start := time.Now()
		testutil.EventuallyEvery(t, 3*time.Minute, 100*time.Millisecond, fmt.Sprintf("%d more jobs succeeded after %s", n, what), func() bool {
			got, err := c.succeeded(ctx)
			if err == nil && got >= min(base+n, faultJobs) {
				t.Logf("%s: +%d jobs in %v (%d succeeded, %d submitted, %d handler runs)", what, got-base, time.Since(start).Round(100*time.Millisecond), got, p.sent.Load(), h.all.Load())
				return true
			}
			return false
		})
	}
	progress("start", 300)

	type fault struct {
		name   string
		inject func()
	}
	faults := []fault{
		{"relay SIGKILL and restart", func() {
			c.relay.Kill()
			time.Sleep(time.Second)
			c.startRelay()
		}},
		{"eks gateway SIGKILL and restart", func() {
			c.eksGW.Kill()
			time.Sleep(time.Second)
			c.eksGW = c.startIn(c.eks, "eks gateway", bin(t, "tunnel"), c.eksGWArgs...)
			c.waitReady(c.eks, c.eksGWAdmin)
		}},
		{"aks gateway SIGKILL and restart", func() {
			c.aksGW.Kill()
			time.Sleep(time.Second)
			c.aksGW = c.startIn(c.aks, "aks gateway", bin(t, "tunnel"), c.aksGWArgs...)
			c.waitReady(c.aks, c.aksGWAdmin)
		}},
		{"link down 15 s", func() {
			netns.MustRun(t, "ip", "-n", c.eks, "link", "set", "veth0", "down")
			time.Sleep(15 * time.Second)
			netns.MustRun(t, "ip", "-n", c.eks, "link", "set", "veth0", "up")
		}},
		{"bunny SIGKILL mid-job and restart", func() {
			c.bunny.Kill()
			time.Sleep(time.Second)
			c.startBunny()
		}},
	}
	for _, f := range faults {
		t.Logf("fault: %s", f.name)
		f.inject()
		progress(f.name, 300)
	}

	<-p.done
	if p.err != nil {
		t.Fatal(p.err)
	}
	retried, twice := c.verifyJobs(ctx, p, h, faultJobs, 4*time.Minute)
	t.Logf("%d jobs succeeded exactly once in relay's store with the right result; %d needed another attempt, %d payloads ran more than once (at-least-once delivery), %d handler runs in all; the producer retried %d batches while relay was away",
		faultJobs, retried, twice, h.all.Load(), p.retry.Load())
}
