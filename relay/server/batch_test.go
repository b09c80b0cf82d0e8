package server_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// One call settles several leases, each answered on its own: a lost lease,
// a repeat and a job the worker may not see fail only themselves.
func TestCompleteBatchOverQUIC(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	c := h.Dial(id)
	ctx := ctxT(t, 20*time.Second)
	for i := range 4 {
		h.Enqueue(queue.NewJob{Queue: "default", Payload: fmt.Appendf(nil, "job %d", i)})
	}
	hidden := h.Enqueue(queue.NewJob{Queue: "theirs"})[0]
	jobs, err := c.Lease(ctx, client.LeaseOptions{Max: 4, Wait: 5 * time.Second})
	if err != nil || len(jobs) != 4 {
		t.Fatalf("leased %d jobs: %v", len(jobs), err)
	}
	if _, err := c.Complete(ctx, jobs[2].Lease, []byte("first")); err != nil {
		t.Fatal(err)
	}
	stale := jobs[3].Lease
	stale.Token = make([]byte, 16)
	res, err := c.CompleteBatch(ctx, []client.Completion{
		{Lease: jobs[0].Lease, Result: []byte("r0")},
		{Lease: jobs[1].Lease, Result: []byte("r1")},
		{Lease: jobs[2].Lease, Result: []byte("second")},
		{Lease: stale, Result: []byte("stale")},
		{Lease: client.Lease{JobID: hidden, Attempt: 1, Token: make([]byte, 16)}},
	})
	if err != nil || len(res) != 5 {
		t.Fatalf("complete batch: %d results, %v", len(res), err)
	}
	for i := range 2 {
		if res[i].Err != nil || res[i].Duplicate {
			t.Fatalf("result %d: %+v", i, res[i])
		}
		if s := h.Get(jobs[i].ID); s.State != store.Succeeded || string(s.Result) != fmt.Sprintf("r%d", i) {
			t.Fatalf("job %d after the batch: %+v", i, s)
		}
	}
	if res[2].Err != nil || !res[2].Duplicate || string(h.Get(jobs[2].ID).Result) != "first" {
		t.Fatalf("repeated completion: %+v, result %q", res[2], h.Get(jobs[2].ID).Result)
	}
	if !errors.Is(res[3].Err, client.ErrLeaseLost) || h.Get(jobs[3].ID).State != store.Leased {
		t.Fatalf("stale lease: %+v, job %+v", res[3], h.Get(jobs[3].ID))
	}
	if !errors.Is(res[4].Err, client.ErrNotFound) || h.Get(hidden).State != store.Queued {
		t.Fatalf("job of a queue the worker may not see: %+v", res[4])
	}
	if n := calls(t, h, "complete_batch", 1); n != 1 {
		t.Fatalf("relay_calls_total{complete_batch,OK} = %v", n)
	}
}

// A batch the server cannot take as a whole is refused as one, naming the
// field; CompleteBatch splits what it is given to fit.
func TestCompleteBatchBounds(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	conn := rawConn(t, h, id)
	many := make([]*proto.CompleteRequest, proto.MaxCompleteBatch+1)
	for i := range many {
		many[i] = &proto.CompleteRequest{Lease: &proto.LeaseRef{JobId: "x", Attempt: 1}}
	}
	for name, req := range map[string]*proto.CompleteBatchRequest{"empty": {}, "too many": {Completions: many}} {
		t.Run(name, func(t *testing.T) {
			b, err := proto.AppendFrame(nil, &proto.Request{Version: proto.Version, Call: &proto.Request_CompleteBatch{CompleteBatch: req}}, 0)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := rawCall(t, conn, b)
			if err != nil || resp.GetError().GetCode() != proto.Code_INVALID_ARGUMENT || resp.GetError().GetMessage() == "" {
				t.Fatalf("resp %v err %v, want INVALID_ARGUMENT naming completions", resp, err)
			}
		})
	}

	c := h.Dial(id)
	ctx := ctxT(t, 30*time.Second)
	n := proto.MaxCompleteBatch + 10
	var cs []client.Completion
	for _, j := range enqueueAndLease(t, h, c, n) {
		cs = append(cs, client.Completion{Lease: j.Lease, Result: []byte(j.ID)})
	}
	res, err := c.CompleteBatch(ctx, cs)
	if err != nil || len(res) != n {
		t.Fatalf("%d results, %v", len(res), err)
	}
	for i, r := range res {
		if r.Err != nil || h.Get(cs[i].Lease.JobID).State != store.Succeeded {
			t.Fatalf("completion %d: %+v", i, r)
		}
	}
	if got := calls(t, h, "complete_batch", 2); got != 2 {
		t.Fatalf("%d completions went in %v calls, want 2", n, got)
	}
}

// Slots finishing together share calls; every completion is answered as
// its own.
func TestCompleteSharedCoalesces(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	h := startRelay(t, relaytest.Options{}, bunny(id))
	c := h.Dial(id)
	ctx := ctxT(t, 30*time.Second)
	const n = 64
	jobs := enqueueAndLease(t, h, c, n)
	start := make(chan struct{})
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Go(func() {
			<-start
			_, errs[i] = c.CompleteShared(ctx, j.Lease, []byte("done"))
		})
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil || h.Get(jobs[i].ID).State != store.Succeeded {
			t.Fatalf("completion %d: %v, job %+v", i, err, h.Get(jobs[i].ID))
		}
	}
	batches := calls(t, h, "complete_batch", 1)
	single := h.Metric("relay_calls_total", map[string]string{"call": "complete", "code": "OK"})
	t.Logf("%d completions in %v single and %v batch calls", n, single, batches)
	if single+batches >= n || batches == 0 {
		t.Fatalf("%d completions made at once went in %v single and %v batch calls", n, single, batches)
	}
	// Repeating one alone is still a duplicate, in one single call.
	if dup, err := c.CompleteShared(ctx, jobs[0].Lease, []byte("again")); err != nil || !dup {
		t.Fatalf("repeat: %v %v", dup, err)
	}
}

// enqueueAndLease enqueues n jobs to queue default and leases them all.
func enqueueAndLease(t *testing.T, h *relaytest.Relay, c *client.Client, n int) []client.Job {
	t.Helper()
	batch := make([]queue.NewJob, n)
	for i := range batch {
		batch[i] = queue.NewJob{Queue: "default"}
	}
	h.Enqueue(batch...)
	ctx := ctxT(t, 20*time.Second)
	var jobs []client.Job
	for len(jobs) < n {
		got, err := c.Lease(ctx, client.LeaseOptions{Max: 100, Wait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, got...)
	}
	return jobs
}

// calls is relay_calls_total{call,OK} once it reaches at least want (relay
// counts a call just after answering it), or after 5s.
func calls(t *testing.T, h *relaytest.Relay, call string, want float64) float64 {
	t.Helper()
	labels := map[string]string{"call": call, "code": "OK"}
	for end := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if n := h.Metric("relay_calls_total", labels); n >= want || time.Now().After(end) {
			return n
		}
	}
}
