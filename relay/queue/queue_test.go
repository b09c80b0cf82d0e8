package queue

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/store"
)

type harness struct {
	t    *testing.T
	path string
	opts Options
	st   *store.Bolt
	q    *Queue
	reg  *prometheus.Registry
}

// newHarness opens a queue on a fresh bbolt file.
func newHarness(t *testing.T, opts Options) *harness {
	t.Helper()
	h := &harness{t: t, path: filepath.Join(t.TempDir(), "relay.db"), opts: opts}
	h.open()
	t.Cleanup(h.close)
	return h
}

func (h *harness) open() {
	h.t.Helper()
	st, err := store.OpenBolt(store.BoltOptions{Path: h.path})
	if err != nil {
		h.t.Fatal(err)
	}
	h.reg = prometheus.NewRegistry()
	opts := h.opts
	opts.Store = st
	opts.Registerer = h.reg
	q, err := Open(context.Background(), opts)
	if err != nil {
		_ = st.Close()
		h.t.Fatal(err)
	}
	h.st, h.q = st, q
}

func (h *harness) close() {
	if h.q != nil {
		_ = h.q.Close()
		_ = h.st.Close()
		h.q, h.st = nil, nil
	}
}

func (h *harness) reopen() {
	h.close()
	h.open()
}

func (h *harness) enqueue(jobs ...NewJob) []store.Job {
	h.t.Helper()
	res, err := h.q.Enqueue(context.Background(), jobs)
	if err != nil {
		h.t.Fatalf("enqueue: %v", err)
	}
	out := make([]store.Job, len(res))
	for i, r := range res {
		out[i] = r.Job
	}
	return out
}

func (h *harness) lease(worker string, max int, wait time.Duration, queues ...string) []store.Job {
	h.t.Helper()
	if len(queues) == 0 {
		queues = []string{"default"}
	}
	jobs, err := h.q.Lease(context.Background(), LeaseRequest{Worker: worker, Queues: queues, Max: max, Wait: wait})
	if err != nil {
		h.t.Fatalf("lease: %v", err)
	}
	return jobs
}

func (h *harness) get(id string) store.Job {
	h.t.Helper()
	j, err := h.q.Get(context.Background(), id)
	if err != nil {
		h.t.Fatalf("get %s: %v", id, err)
	}
	return j
}

func ref(j store.Job) Ref { return Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken} }

func counter(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

func TestFullCycle(t *testing.T) {
	h := newHarness(t, Options{})
	j := h.enqueue(NewJob{Queue: "default", Payload: []byte("hello")})[0]
	if j.State != store.Queued || j.Attempt != 0 || j.MaxAttempts != 25 || j.LeaseDuration != 30*time.Second {
		t.Fatalf("enqueued job: %+v", j)
	}
	got := h.lease("bunny", 10, 0)
	if len(got) != 1 || got[0].ID != j.ID || string(got[0].Payload) != "hello" {
		t.Fatalf("leased %+v", got)
	}
	l := got[0]
	if l.State != store.Leased || l.Attempt != 1 || len(l.LeaseToken) != 16 || l.LeasedBy != "bunny" {
		t.Fatalf("lease: %+v", l)
	}
	if d := time.Until(l.LeaseDeadline); d < 29*time.Second || d > 30*time.Second {
		t.Fatalf("deadline in %s, want ~30s", d)
	}
	if more := h.lease("bunny", 10, 0); len(more) != 0 {
		t.Fatalf("a leased job was leased again: %+v", more)
	}
	dup, err := h.q.Complete(context.Background(), "bunny", ref(l), []byte("world"))
	if err != nil || dup {
		t.Fatalf("complete: dup %v err %v", dup, err)
	}
	done := h.get(j.ID)
	if done.State != store.Succeeded || string(done.Result) != "world" || done.FinishedAt.IsZero() {
		t.Fatalf("after complete: %+v", done)
	}
	// Complete is idempotent; the first result stays.
	dup, err = h.q.Complete(context.Background(), "bunny", ref(l), []byte("other"))
	if err != nil || !dup {
		t.Fatalf("repeated complete: dup %v err %v", dup, err)
	}
	if r := h.get(j.ID).Result; string(r) != "world" {
		t.Fatalf("result now %q", r)
	}
	if n := counter(h.q.m.completions.WithLabelValues("default")); n != 1 {
		t.Fatalf("completions = %v", n)
	}

	// Everything survives a restart, including idempotent completion
	// answered from the store.
	h.reopen()
	done = h.get(j.ID)
	if done.State != store.Succeeded || string(done.Result) != "world" {
		t.Fatalf("after reopen: %+v", done)
	}
	if dup, err := h.q.Complete(context.Background(), "bunny", ref(l), nil); err != nil || !dup {
		t.Fatalf("complete after reopen: dup %v err %v", dup, err)
	}
	if c := h.q.Counts(); c[store.QueueState{Queue: "default", State: store.Succeeded}] != 1 || len(c) != 1 {
		t.Fatalf("counts after reopen: %v", c)
	}
}

func TestIdempotencyKey(t *testing.T) {
	h := newHarness(t, Options{})
	res, err := h.q.Enqueue(context.Background(), []NewJob{
		{Queue: "default", Payload: []byte("a"), IdempotencyKey: "k"},
		{Queue: "default", Payload: []byte("b"), IdempotencyKey: "k"},
		{Queue: "other", Payload: []byte("c"), IdempotencyKey: "k"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Existing || !res[1].Existing || res[1].Job.ID != res[0].Job.ID || string(res[1].Job.Payload) != "a" {
		t.Fatalf("same key in one batch: %+v", res[:2])
	}
	if res[2].Existing || res[2].Job.ID == res[0].Job.ID {
		t.Fatal("keys are per queue")
	}
	first := res[0].Job
	l := h.lease("bunny", 1, 0)[0]
	if _, err := h.q.Complete(context.Background(), "bunny", ref(l), []byte("r")); err != nil {
		t.Fatal(err)
	}
	// After it finished, and after a restart, the key still finds it.
	for _, reopen := range []bool{false, true} {
		if reopen {
			h.reopen()
		}
		res, err := h.q.Enqueue(context.Background(), []NewJob{{Queue: "default", Payload: []byte("again"), IdempotencyKey: "k"}})
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].Existing || res[0].Job.ID != first.ID || res[0].Job.State != store.Succeeded {
			t.Fatalf("reopen=%v: %+v", reopen, res[0])
		}
	}
	if n := len(h.lease("bunny", 10, 0)); n != 0 {
		t.Fatalf("%d jobs leasable; the repeats must not have added any", n)
	}
}

func TestEnqueueValidation(t *testing.T) {
	h := newHarness(t, Options{MaxPayload: 10})
	tests := []struct {
		name  string
		jobs  []NewJob
		field string
	}{
		{"no jobs", nil, "jobs"},
		{"no queue", []NewJob{{}}, "queue"},
		{"bad queue", []NewJob{{Queue: "a b"}}, "queue"},
		{"big payload", []NewJob{{Queue: "q", Payload: make([]byte, 11)}}, "payload"},
		{"attempts", []NewJob{{Queue: "q", MaxAttempts: MaxAttemptsLimit + 1}}, "max_attempts"},
		{"short lease", []NewJob{{Queue: "q", LeaseDuration: time.Millisecond}}, "lease_duration"},
		{"long key", []NewJob{{Queue: "q", IdempotencyKey: strings.Repeat("k", MaxKeyLen+1)}}, "idempotency_key"},
		{"zero byte key", []NewJob{{Queue: "q", IdempotencyKey: "a\x00b"}}, "idempotency_key"},
		{"second of batch", []NewJob{{Queue: "q"}, {Queue: ""}}, "jobs[1].queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := h.q.Enqueue(context.Background(), tt.jobs)
			var ie *InvalidError
			if !errors.As(err, &ie) || ie.Field != tt.field {
				t.Fatalf("err = %v, want an InvalidError for field %q", err, tt.field)
			}
		})
	}
	if c := h.q.Counts(); len(c) != 0 {
		t.Fatalf("refused batches changed counts: %v", c)
	}
}

func TestRunAfter(t *testing.T) {
	h := newHarness(t, Options{})
	at := time.Now().Add(300 * time.Millisecond)
	j := h.enqueue(NewJob{Queue: "default", RunAfter: at})[0]
	if got := h.lease("w", 1, 0); len(got) != 0 {
		t.Fatal("a job was leased before its run-after time")
	}
	got := h.lease("w", 1, 5*time.Second)
	if len(got) != 1 || got[0].ID != j.ID {
		t.Fatalf("leased %+v", got)
	}
	if got[0].LeasedAt.Before(at) {
		t.Fatalf("leased at %s, before run-after %s", got[0].LeasedAt, at)
	}
}

func parked(q *Queue) int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.waiters)
}

// One job wakes one waiter, the one waiting longest.
func TestLongPollWakesOneWaiterPerJob(t *testing.T) {
	h := newHarness(t, Options{})
	type result struct {
		worker string
		jobs   []store.Job
	}
	results := make(chan result, 3)
	for i := 0; i < 3; i++ {
		w := fmt.Sprintf("w%d", i)
		go func() {
			jobs, err := h.q.Lease(context.Background(), LeaseRequest{Worker: w, Queues: []string{"default"}, Max: 5, Wait: 10 * time.Second})
			if err != nil {
				t.Error(err)
			}
			results <- result{w, jobs}
		}()
		testutil.Eventually(t, 5*time.Second, "the waiter to park", func() bool { return parked(h.q) == i+1 })
	}
	j := h.enqueue(NewJob{Queue: "default"})[0]
	r := <-results
	if r.worker != "w0" || len(r.jobs) != 1 || r.jobs[0].ID != j.ID {
		t.Fatalf("first job went to %s: %d jobs", r.worker, len(r.jobs))
	}
	if n := parked(h.q); n != 2 {
		t.Fatalf("%d waiters parked after one job, want 2", n)
	}
	// A job in a queue nobody waits on wakes no one.
	h.enqueue(NewJob{Queue: "elsewhere"})
	time.Sleep(50 * time.Millisecond)
	if n := parked(h.q); n != 2 {
		t.Fatalf("%d waiters parked, want 2", n)
	}
	h.enqueue(NewJob{Queue: "default"}, NewJob{Queue: "default"}, NewJob{Queue: "default"})
	r = <-results
	if r.worker != "w1" || len(r.jobs) != 3 {
		t.Fatalf("batch of 3 went to %s: %d jobs; want all to w1, the oldest waiter", r.worker, len(r.jobs))
	}
	if n := parked(h.q); n != 1 {
		t.Fatalf("%d waiters parked, want 1", n)
	}
}

func TestLongPollTimesOutEmpty(t *testing.T) {
	h := newHarness(t, Options{})
	start := time.Now()
	if got := h.lease("w", 1, 100*time.Millisecond); len(got) != 0 {
		t.Fatalf("leased %d jobs from an empty queue", len(got))
	}
	if time.Since(start) < 100*time.Millisecond {
		t.Fatal("returned before the wait")
	}
	if n := parked(h.q); n != 0 {
		t.Fatalf("%d waiters left parked", n)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		testutil.Eventually(t, 5*time.Second, "park", func() bool { return parked(h.q) == 1 })
		cancel()
	}()
	_, err := h.q.Lease(ctx, LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1, Wait: 10 * time.Second})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled long poll: %v", err)
	}
}

func TestLeaseExpiryRedeliversAndFencesLateAnswers(t *testing.T) {
	h := newHarness(t, Options{Backoff: Backoff{Base: 10 * time.Millisecond, Max: 20 * time.Millisecond}})
	j := h.enqueue(NewJob{Queue: "default", LeaseDuration: time.Second, MaxAttempts: 5})[0]
	first := h.lease("w1", 1, 0)[0]
	second := h.lease("w2", 1, 5*time.Second)
	if len(second) != 1 || second[0].ID != j.ID || second[0].Attempt != 2 {
		t.Fatalf("after expiry: %+v", second)
	}
	if d := second[0].LeasedAt.Sub(first.LeasedAt); d < time.Second {
		t.Fatalf("redelivered after %s, before the 1s lease expired", d)
	}
	if n := counter(h.q.m.expirations.WithLabelValues("default")); n != 1 {
		t.Fatalf("expirations = %v", n)
	}
	if n := counter(h.q.m.redeliveries.WithLabelValues("default")); n != 1 {
		t.Fatalf("redeliveries = %v", n)
	}
	if e := h.get(j.ID).LastError; !strings.Contains(e, "lease expired") {
		t.Fatalf("last error %q", e)
	}
	// The first worker's late answers cannot touch the newer attempt.
	if _, err := h.q.Complete(context.Background(), "w1", ref(first), []byte("late")); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("late complete: %v, want ErrLeaseLost", err)
	}
	if _, err := h.q.Fail(context.Background(), "w1", ref(first), "late", true, 0); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("late fail: %v, want ErrLeaseLost", err)
	}
	st, err := h.q.Heartbeat("w1", []Ref{ref(first)}, false)
	if err != nil || st[0].State != proto.LeaseLost {
		t.Fatalf("late heartbeat: %+v %v", st, err)
	}
	if got := h.get(j.ID); got.State != store.Leased || got.Attempt != 2 || got.Result != nil {
		t.Fatalf("the newer attempt was disturbed: %+v", got)
	}
	if _, err := h.q.Complete(context.Background(), "w2", ref(second[0]), []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if n := counter(h.q.m.fenced.WithLabelValues("complete")); n != 1 {
		t.Fatalf("fenced completes = %v", n)
	}
}

// A lease that expired may still complete its job while no newer attempt
// has started.
func TestLateCompleteWinsWhenNoNewerAttempt(t *testing.T) {
	h := newHarness(t, Options{Backoff: Backoff{Base: time.Hour, Max: time.Hour}})
	j := h.enqueue(NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	l := h.lease("w1", 1, 0)[0]
	testutil.Eventually(t, 5*time.Second, "the lease to expire", func() bool { return h.get(j.ID).State == store.Retrying })
	if dup, err := h.q.Complete(context.Background(), "w1", ref(l), []byte("late but first")); err != nil || dup {
		t.Fatalf("late complete: %v %v", dup, err)
	}
	got := h.get(j.ID)
	if got.State != store.Succeeded || string(got.Result) != "late but first" {
		t.Fatalf("%+v", got)
	}
	if n := len(h.lease("w2", 1, 0)); n != 0 {
		t.Fatal("a completed job was leased again")
	}
}

func TestFencing(t *testing.T) {
	h := newHarness(t, Options{})
	h.enqueue(NewJob{Queue: "default"})
	l := h.lease("w1", 1, 0)[0]
	badToken := ref(l)
	badToken.Token = []byte("0123456789abcdef")
	badAttempt := ref(l)
	badAttempt.Attempt = 2
	noToken := ref(l)
	noToken.Token = nil
	tests := []struct {
		name   string
		worker string
		ref    Ref
	}{
		{"wrong token", "w1", badToken},
		{"wrong attempt", "w1", badAttempt},
		{"no token", "w1", noToken},
		{"other worker", "w2", ref(l)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := h.q.Complete(context.Background(), tt.worker, tt.ref, nil); !errors.Is(err, ErrLeaseLost) {
				t.Fatalf("complete: %v", err)
			}
			if _, err := h.q.Fail(context.Background(), tt.worker, tt.ref, "x", false, 0); !errors.Is(err, ErrLeaseLost) {
				t.Fatalf("fail: %v", err)
			}
			st, _ := h.q.Heartbeat(tt.worker, []Ref{tt.ref}, false)
			if st[0].State != proto.LeaseLost {
				t.Fatalf("heartbeat: %v", st[0].State)
			}
		})
	}
	if _, err := h.q.Complete(context.Background(), "w1", Ref{JobID: "nope", Attempt: 1, Token: l.LeaseToken}, nil); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown job: %v", err)
	}
	if got := h.get(l.ID); got.State != store.Leased {
		t.Fatalf("refused calls changed the job: %+v", got)
	}
}

func TestHeartbeatExtends(t *testing.T) {
	h := newHarness(t, Options{})
	j := h.enqueue(NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	l := h.lease("w", 1, 0)[0]
	end := time.Now().Add(2500 * time.Millisecond)
	for time.Now().Before(end) {
		st, err := h.q.Heartbeat("w", []Ref{ref(l)}, false)
		if err != nil || st[0].State != proto.LeaseHeld {
			t.Fatalf("heartbeat: %+v %v", st, err)
		}
		if d := time.Until(st[0].Deadline); d < 900*time.Millisecond {
			t.Fatalf("deadline only %s away after a heartbeat", d)
		}
		time.Sleep(300 * time.Millisecond)
	}
	if got := h.get(j.ID); got.State != store.Leased || got.Attempt != 1 {
		t.Fatalf("a heartbeated lease was lost: %+v", got)
	}
	if _, err := h.q.Complete(context.Background(), "w", ref(l), nil); err != nil {
		t.Fatal(err)
	}
}

func TestMaxAttemptsThenDeadThenRetry(t *testing.T) {
	h := newHarness(t, Options{Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond}})
	j := h.enqueue(NewJob{Queue: "default", MaxAttempts: 2})[0]
	for attempt := uint32(1); attempt <= 2; attempt++ {
		l := h.lease("w", 1, 5*time.Second)
		if len(l) != 1 || l[0].Attempt != attempt {
			t.Fatalf("attempt %d: leased %+v", attempt, l)
		}
		res, err := h.q.Fail(context.Background(), "w", ref(l[0]), fmt.Sprintf("boom %d", attempt), false, 0)
		if err != nil {
			t.Fatal(err)
		}
		want := store.Retrying
		if attempt == 2 {
			want = store.Dead
		}
		if res.State != want {
			t.Fatalf("attempt %d: %s, want %s", attempt, res.State, want)
		}
		// Fail is idempotent too.
		again, err := h.q.Fail(context.Background(), "w", ref(l[0]), "again", false, 0)
		if err != nil || !again.Duplicate || again.State != want {
			t.Fatalf("repeated fail: %+v %v", again, err)
		}
	}
	dead := h.get(j.ID)
	if dead.State != store.Dead || dead.LastError != "boom 2" || dead.Attempt != 2 {
		t.Fatalf("dead job: %+v", dead)
	}
	if n := len(h.lease("w", 1, 50*time.Millisecond)); n != 0 {
		t.Fatal("a dead job was leased")
	}
	h.reopen() // dead stays visible
	if _, err := h.q.Cancel(context.Background(), j.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancel of a dead job: %v", err)
	}
	r, err := h.q.Retry(context.Background(), j.ID)
	if err != nil || r.State != store.Queued || r.Attempt != 0 || r.LastError != "boom 2" {
		t.Fatalf("retry: %+v %v", r, err)
	}
	if _, err := h.q.Retry(context.Background(), j.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("retry of a queued job: %v", err)
	}
	l := h.lease("w", 1, 0)
	if len(l) != 1 || l[0].Attempt != 1 {
		t.Fatalf("after retry: %+v", l)
	}
}

func TestPermanentFailure(t *testing.T) {
	h := newHarness(t, Options{})
	j := h.enqueue(NewJob{Queue: "default"})[0]
	l := h.lease("w", 1, 0)[0]
	res, err := h.q.Fail(context.Background(), "w", ref(l), "bad input", true, 0)
	if err != nil || res.State != store.Failed {
		t.Fatalf("%+v %v", res, err)
	}
	if got := h.get(j.ID); got.State != store.Failed || got.LastError != "bad input" {
		t.Fatalf("%+v", got)
	}
}

func TestFailWithRetryAfter(t *testing.T) {
	h := newHarness(t, Options{})
	h.enqueue(NewJob{Queue: "default"})
	l := h.lease("w", 1, 0)[0]
	res, err := h.q.Fail(context.Background(), "w", ref(l), "later", false, 200*time.Millisecond)
	if err != nil || res.State != store.Retrying {
		t.Fatalf("%+v %v", res, err)
	}
	if d := time.Until(res.NextAttempt); d > 200*time.Millisecond || d < 100*time.Millisecond {
		t.Fatalf("next attempt in %s, want ~200ms", d)
	}
	again := h.lease("w", 1, 5*time.Second)
	if len(again) != 1 || again[0].LeasedAt.Before(res.NextAttempt) {
		t.Fatalf("re-leased %+v before %s", again, res.NextAttempt)
	}
}

func TestCancel(t *testing.T) {
	h := newHarness(t, Options{})
	queued := h.enqueue(NewJob{Queue: "default", RunAfter: time.Now().Add(time.Hour)})[0]
	c, err := h.q.Cancel(context.Background(), queued.ID)
	if err != nil || c.State != store.Cancelled {
		t.Fatalf("cancel queued: %+v %v", c, err)
	}
	if c, err := h.q.Cancel(context.Background(), queued.ID); err != nil || c.State != store.Cancelled {
		t.Fatalf("cancel again: %+v %v", c, err)
	}

	running := h.enqueue(NewJob{Queue: "default"})[0]
	l := h.lease("w", 1, 0)[0]
	if l.ID != running.ID {
		t.Fatal("the cancelled job was leased")
	}
	c, err = h.q.Cancel(context.Background(), running.ID)
	if err != nil || c.State != store.Leased || !c.CancelRequested {
		t.Fatalf("cancel leased: %+v %v", c, err)
	}
	st, err := h.q.Heartbeat("w", []Ref{ref(l)}, false)
	if err != nil || st[0].State != proto.LeaseCancelRequested {
		t.Fatalf("heartbeat: %+v %v", st, err)
	}
	res, err := h.q.Fail(context.Background(), "w", ref(l), "stopped on request", false, 0)
	if err != nil || res.State != store.Cancelled {
		t.Fatalf("fail after cancel: %+v %v", res, err)
	}
	h.reopen()
	if got := h.get(running.ID); got.State != store.Cancelled || !got.CancelRequested {
		t.Fatalf("after reopen: %+v", got)
	}

	// A completed job cannot be cancelled.
	h.enqueue(NewJob{Queue: "default"})
	l = h.lease("w", 1, 0)[0]
	if _, err := h.q.Complete(context.Background(), "w", ref(l), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.q.Cancel(context.Background(), l.ID); !errors.Is(err, ErrConflict) {
		t.Fatalf("cancel of a succeeded job: %v", err)
	}
	if _, err := h.q.Cancel(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
}

// A cancelled lease that expires ends cancelled, not retried.
func TestCancelledLeaseExpires(t *testing.T) {
	h := newHarness(t, Options{})
	j := h.enqueue(NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	h.lease("w", 1, 0)
	if _, err := h.q.Cancel(context.Background(), j.ID); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 5*time.Second, "the cancelled lease to expire", func() bool { return h.get(j.ID).State == store.Cancelled })
}

func TestRestartGrace(t *testing.T) {
	h := newHarness(t, Options{Backoff: Backoff{Base: time.Millisecond, Max: time.Millisecond}})
	j := h.enqueue(NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	l := h.lease("w", 1, 0)[0]
	h.close()
	time.Sleep(1200 * time.Millisecond) // past the stored deadline
	h.open()
	got := h.get(j.ID)
	if got.State != store.Leased || time.Until(got.LeaseDeadline) < 500*time.Millisecond {
		t.Fatalf("after restart: %+v (deadline in %s)", got, time.Until(got.LeaseDeadline))
	}
	st, err := h.q.Heartbeat("w", []Ref{ref(l)}, false)
	if err != nil || st[0].State != proto.LeaseHeld {
		t.Fatalf("heartbeat after restart: %+v %v", st, err)
	}
	// Without more heartbeats it is redelivered.
	again := h.lease("w2", 1, 5*time.Second)
	if len(again) != 1 || again[0].Attempt != 2 {
		t.Fatalf("after the grace: %+v", again)
	}
}

func TestUnlease(t *testing.T) {
	h := newHarness(t, Options{})
	j := h.enqueue(NewJob{Queue: "default"})[0]
	l := h.lease("w", 1, 0)[0]
	h.q.Unlease("w", []Ref{ref(l)})
	got := h.get(j.ID)
	if got.State != store.Queued || got.Attempt != 0 {
		t.Fatalf("after unlease: %+v", got)
	}
	again := h.lease("w", 1, 0)
	if len(again) != 1 || again[0].Attempt != 1 {
		t.Fatalf("re-lease: %+v", again)
	}
	if _, err := h.q.Complete(context.Background(), "w", ref(l), nil); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("the undone lease still works: %v", err)
	}
}

// A heartbeat that lists every lease the worker holds releases the ones
// it does not list.
func TestAllHeldReleasesUnlisted(t *testing.T) {
	h := newHarness(t, Options{ReleaseGrace: 50 * time.Millisecond})
	h.enqueue(NewJob{Queue: "default"}, NewJob{Queue: "default"})
	ls := h.lease("w", 2, 0)
	if len(ls) != 2 {
		t.Fatal(len(ls))
	}
	// Too young to release.
	if _, err := h.q.Heartbeat("w", []Ref{ref(ls[0])}, true); err != nil {
		t.Fatal(err)
	}
	if got := h.get(ls[1].ID); got.State != store.Leased {
		t.Fatalf("released within the grace: %+v", got)
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := h.q.Heartbeat("w", []Ref{ref(ls[0])}, true); err != nil {
		t.Fatal(err)
	}
	if got := h.get(ls[0].ID); got.State != store.Leased {
		t.Fatalf("the listed lease: %+v", got)
	}
	again := h.lease("w2", 1, 0)
	if len(again) != 1 || again[0].ID != ls[1].ID || again[0].Attempt != 2 {
		t.Fatalf("released job: %+v", again)
	}
}

func TestMaxLeasesPerWorker(t *testing.T) {
	h := newHarness(t, Options{MaxLeasesPerWorker: 2})
	for i := 0; i < 3; i++ {
		h.enqueue(NewJob{Queue: "default"})
	}
	if n := len(h.lease("w", 10, 0)); n != 2 {
		t.Fatalf("leased %d, cap 2", n)
	}
	_, err := h.q.Lease(context.Background(), LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1})
	if !errors.Is(err, ErrTooManyLeases) {
		t.Fatalf("lease past the cap: %v", err)
	}
	if n := len(h.lease("other", 10, 0)); n != 1 {
		t.Fatalf("another worker leased %d", n)
	}
}

func TestFull(t *testing.T) {
	h := newHarness(t, Options{MaxLiveJobs: 2})
	h.enqueue(NewJob{Queue: "default"}, NewJob{Queue: "default"})
	if _, err := h.q.Enqueue(context.Background(), []NewJob{{Queue: "default"}}); !errors.Is(err, ErrFull) {
		t.Fatalf("enqueue past the limit: %v", err)
	}
}

func TestLeaseAcrossQueuesOldestFirst(t *testing.T) {
	h := newHarness(t, Options{})
	a := h.enqueue(NewJob{Queue: "a"})[0]
	b := h.enqueue(NewJob{Queue: "b"})[0]
	h.enqueue(NewJob{Queue: "c"})
	got := h.lease("w", 5, 0, "b", "a")
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID {
		t.Fatalf("leased %v", got)
	}
}

func TestMaxBytesPacksAnswer(t *testing.T) {
	h := newHarness(t, Options{})
	for i := 0; i < 3; i++ {
		h.enqueue(NewJob{Queue: "default", Payload: make([]byte, 100)})
	}
	jobs, err := h.q.Lease(context.Background(), LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 3, MaxBytes: 250})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("leased %d (%v), want 2 within 250 bytes", len(jobs), err)
	}
}

// Many workers lease and complete concurrently: each job completes once.
func TestConcurrentWorkers(t *testing.T) {
	h := newHarness(t, Options{})
	const jobs, workers = 400, 8
	batch := make([]NewJob, 0, jobs)
	for i := 0; i < jobs; i++ {
		batch = append(batch, NewJob{Queue: "default", Payload: []byte(fmt.Sprint(i))})
	}
	var mu sync.Mutex
	seen := map[string]int{}
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("w%d", w)
			for ctx.Err() == nil {
				ls, err := h.q.Lease(ctx, LeaseRequest{Worker: name, Queues: []string{"default"}, Max: 4, Wait: 200 * time.Millisecond})
				if err != nil {
					return
				}
				if len(ls) == 0 {
					mu.Lock()
					n := len(seen)
					mu.Unlock()
					if n == jobs {
						return
					}
				}
				for _, l := range ls {
					if _, err := h.q.Complete(ctx, name, ref(l), l.Payload); err != nil {
						t.Errorf("complete: %v", err)
						return
					}
					mu.Lock()
					seen[l.ID]++
					mu.Unlock()
				}
			}
		}()
	}
	for i := 0; i < jobs; i += 100 {
		if _, err := h.q.Enqueue(ctx, batch[i:i+100]); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	if len(seen) != jobs {
		t.Fatalf("%d jobs completed, want %d", len(seen), jobs)
	}
	for id, n := range seen {
		if n != 1 {
			t.Fatalf("job %s completed %d times", id, n)
		}
	}
	if c := h.q.Counts(); c[store.QueueState{Queue: "default", State: store.Succeeded}] != jobs || len(c) != 1 {
		t.Fatalf("counts: %v", c)
	}
}

func TestIDsSortByCreation(t *testing.T) {
	var g idGen
	now := time.Now()
	prev := ""
	for i := 0; i < 1000; i++ {
		id := g.next(now.Add(time.Duration(i%3) * time.Millisecond / 2))
		if len(id) != 26 {
			t.Fatalf("id %q has %d characters", id, len(id))
		}
		if id <= prev {
			t.Fatalf("id %s after %s", id, prev)
		}
		prev = id
	}
}

func TestBackoff(t *testing.T) {
	b := Backoff{Base: time.Second, Max: time.Minute}
	b.setDefaults()
	tests := []struct {
		n        uint32
		min, max time.Duration
	}{
		{1, 500 * time.Millisecond, time.Second},
		{2, time.Second, 2 * time.Second},
		{4, 4 * time.Second, 8 * time.Second},
		{10, 30 * time.Second, time.Minute},
		{200, 30 * time.Second, time.Minute},
	}
	for _, tt := range tests {
		for i := 0; i < 100; i++ {
			if d := b.Delay(tt.n); d < tt.min || d > tt.max {
				t.Fatalf("Delay(%d) = %s, want %s to %s", tt.n, d, tt.min, tt.max)
			}
		}
	}
}
