package queuetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// NewStore makes a fresh, empty store for one test and returns a function
// that opens a queue on it with opts. The test closes each queue it opens
// before opening the next, which sees everything the last one committed
// (a restart). Queues still open when the test ends are closed for it.
type NewStore func(t *testing.T, opts queue.Options) (open func() queue.Backend)

// Run runs every conformance test against the backend newStore makes.
func Run(t *testing.T, newStore NewStore) {
	for _, tc := range []struct {
		name string
		opts queue.Options
		fn   func(*harness)
	}{
		{"FullCycle", queue.Options{}, testFullCycle},
		{"Fencing", queue.Options{}, testFencing},
		{"ExpiryRedeliversAndFences", fastBackoff(), testExpiry},
		{"LateCompleteWinsWhenNoNewerAttempt", slowBackoff(), testLateComplete},
		{"MaxAttemptsThenDeadThenRetry", fastBackoff(), testDead},
		{"Backoff", queue.Options{Backoff: queue.Backoff{Base: 400 * time.Millisecond, Max: 400 * time.Millisecond}}, testBackoff},
		{"RetryAfterAndPermanent", queue.Options{}, testRetryAfterAndPermanent},
		{"Cancel", queue.Options{}, testCancel},
		{"CancelledLeaseExpires", queue.Options{}, testCancelledLeaseExpires},
		{"IdempotencyKeys", queue.Options{}, testIdempotencyKeys},
		{"RestartGrace", fastBackoff(), testRestartGrace},
		{"Caps", queue.Options{MaxPayload: 10, MaxResult: 5}, testCaps},
		{"RunAfter", queue.Options{}, testRunAfter},
		{"LongPoll", queue.Options{}, testLongPoll},
		{"Unlease", queue.Options{}, testUnlease},
		{"AllHeldReleasesUnlisted", queue.Options{ReleaseGrace: 200 * time.Millisecond}, testRelease},
		{"MaxLeasesPerWorker", queue.Options{MaxLeasesPerWorker: 2}, testMaxLeases},
		{"OldestFirstAndMaxBytes", queue.Options{}, testOrder},
		{"ConcurrentWorkersExactlyOnce", queue.Options{}, testConcurrent},
		{"List", queue.Options{}, testList},
		{"PauseResume", queue.Options{}, testPause},
		{"DeleteFinished", queue.Options{}, testDelete},
		{"Rates", queue.Options{}, testRates},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &harness{t: t, open: newStore(t, tc.opts)}
			h.q = h.open()
			t.Cleanup(func() { h.q.Close() })
			tc.fn(h)
		})
	}
}

func fastBackoff() queue.Options {
	return queue.Options{Backoff: queue.Backoff{Base: 10 * time.Millisecond, Max: 20 * time.Millisecond}}
}

func slowBackoff() queue.Options {
	return queue.Options{Backoff: queue.Backoff{Base: time.Hour, Max: time.Hour}}
}

type harness struct {
	t    *testing.T
	open func() queue.Backend
	q    queue.Backend
}

var bg = context.Background()

func (h *harness) restart() {
	h.t.Helper()
	if err := h.q.Close(); err != nil {
		h.t.Fatal(err)
	}
	h.q = h.open()
}

func (h *harness) enqueue(jobs ...queue.NewJob) []store.Job {
	h.t.Helper()
	res, err := h.q.Enqueue(bg, jobs)
	if err != nil {
		h.t.Fatal(err)
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
	jobs, err := h.q.Lease(bg, queue.LeaseRequest{Worker: worker, Queues: queues, Max: max, Wait: wait})
	if err != nil {
		h.t.Fatal(err)
	}
	return jobs
}

func (h *harness) get(id string) store.Job {
	h.t.Helper()
	j, err := h.q.Get(bg, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return j
}

func (h *harness) heartbeat(worker string, allHeld bool, jobs ...store.Job) []queue.LeaseStatus {
	h.t.Helper()
	refs := make([]queue.Ref, len(jobs))
	for i, j := range jobs {
		refs[i] = ref(j)
	}
	st, err := h.q.Heartbeat(worker, refs, allHeld)
	if err != nil {
		h.t.Fatal(err)
	}
	return st
}

func ref(j store.Job) queue.Ref {
	return queue.Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}
}

// eventually polls cond every 10ms until it holds or d passes.
func (h *harness) eventually(d time.Duration, what string, cond func() bool) {
	h.t.Helper()
	for end := time.Now().Add(d); ; {
		if cond() {
			return
		}
		if time.Now().After(end) {
			h.t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testFullCycle(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default", Payload: []byte("hello")})[0]
	if j.State != store.Queued || j.Attempt != 0 || j.ID == "" {
		h.t.Fatalf("enqueued: %+v", j)
	}
	l := h.lease("w", 1, 0)
	if len(l) != 1 || l[0].ID != j.ID || l[0].Attempt != 1 || len(l[0].LeaseToken) == 0 || string(l[0].Payload) != "hello" {
		h.t.Fatalf("leased: %+v", l)
	}
	if !l[0].LeaseDeadline.After(time.Now()) || l[0].LeasedBy != "w" {
		h.t.Fatalf("lease: deadline %s, by %q", l[0].LeaseDeadline, l[0].LeasedBy)
	}
	if more := h.lease("w2", 1, 0); len(more) != 0 {
		h.t.Fatalf("a leased job was leased again: %+v", more)
	}
	if st := h.heartbeat("w", false, l[0]); st[0].State != proto.LeaseHeld || st[0].Deadline.IsZero() {
		h.t.Fatalf("heartbeat: %+v", st)
	}
	dup, err := h.q.Complete(bg, "w", ref(l[0]), []byte("result"))
	if err != nil || dup {
		h.t.Fatalf("complete: %v %v", dup, err)
	}
	// Idempotent: the same lease again is a duplicate; the first result stays.
	dup, err = h.q.Complete(bg, "w", ref(l[0]), []byte("other"))
	if err != nil || !dup {
		h.t.Fatalf("second complete: %v %v", dup, err)
	}
	h.restart()
	got := h.get(j.ID)
	if got.State != store.Succeeded || string(got.Result) != "result" || got.LeaseEnd != store.EndCompleted || got.FinishedAt.IsZero() {
		h.t.Fatalf("after restart: %+v", got)
	}
	if st := h.heartbeat("w", false, l[0]); st[0].State != proto.LeaseLost {
		h.t.Fatalf("heartbeat of a completed job: %+v", st)
	}
	if name, err := h.q.QueueOf(bg, j.ID); err != nil || name != "default" {
		h.t.Fatalf("QueueOf: %q %v", name, err)
	}
	if _, err := h.q.Get(bg, "nope"); !errors.Is(err, queue.ErrNotFound) {
		h.t.Fatalf("get of an unknown job: %v", err)
	}
}

func testFencing(h *harness) {
	h.enqueue(queue.NewJob{Queue: "default"})
	l := h.lease("w", 1, 0)[0]
	bad := []struct {
		name   string
		worker string
		ref    queue.Ref
	}{
		{"other worker", "x", ref(l)},
		{"old attempt", "w", queue.Ref{JobID: l.ID, Attempt: l.Attempt - 1, Token: l.LeaseToken}},
		{"newer attempt", "w", queue.Ref{JobID: l.ID, Attempt: l.Attempt + 1, Token: l.LeaseToken}},
		{"wrong token", "w", queue.Ref{JobID: l.ID, Attempt: l.Attempt, Token: []byte("forged-token-123")}},
		{"no token", "w", queue.Ref{JobID: l.ID, Attempt: l.Attempt}},
	}
	for _, b := range bad {
		if _, err := h.q.Complete(bg, b.worker, b.ref, nil); !errors.Is(err, queue.ErrLeaseLost) {
			h.t.Errorf("complete with %s: %v, want lease lost", b.name, err)
		}
		if _, err := h.q.Fail(bg, b.worker, b.ref, "x", false, 0); !errors.Is(err, queue.ErrLeaseLost) {
			h.t.Errorf("fail with %s: %v, want lease lost", b.name, err)
		}
		st, err := h.q.Heartbeat(b.worker, []queue.Ref{b.ref}, false)
		if err != nil || st[0].State != proto.LeaseLost {
			h.t.Errorf("heartbeat with %s: %+v %v, want lost", b.name, st, err)
		}
	}
	if got := h.get(l.ID); got.State != store.Leased {
		h.t.Fatalf("a fenced call changed the job: %+v", got)
	}
	if _, err := h.q.Complete(bg, "w", queue.Ref{JobID: "nope", Attempt: 1, Token: []byte("t")}, nil); !errors.Is(err, queue.ErrNotFound) {
		h.t.Fatalf("complete of an unknown job: %v", err)
	}
	// Complete and fail race: exactly one wins.
	var wg sync.WaitGroup
	var completeErr, failErr error
	wg.Add(2)
	go func() { defer wg.Done(); _, completeErr = h.q.Complete(bg, "w", ref(l), []byte("r")) }()
	go func() { defer wg.Done(); _, failErr = h.q.Fail(bg, "w", ref(l), "boom", false, 0) }()
	wg.Wait()
	if (completeErr == nil) == (failErr == nil) {
		h.t.Fatalf("complete %v and fail %v: want exactly one to win", completeErr, failErr)
	}
}

func testExpiry(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	first := h.lease("w1", 1, 0)[0]
	// Not heartbeat: it expires and is delivered again.
	again := h.lease("w2", 1, 5*time.Second)
	if len(again) != 1 || again[0].ID != j.ID || again[0].Attempt != 2 {
		h.t.Fatalf("redelivery: %+v", again)
	}
	if !bytesDiffer(again[0].LeaseToken, first.LeaseToken) {
		h.t.Fatal("the new lease has the old token")
	}
	// The first lease is fenced off now.
	if _, err := h.q.Complete(bg, "w1", ref(first), []byte("late")); !errors.Is(err, queue.ErrLeaseLost) {
		h.t.Fatalf("late complete after a newer attempt: %v", err)
	}
	if st := h.heartbeat("w1", false, first); st[0].State != proto.LeaseLost {
		h.t.Fatalf("late heartbeat: %+v", st)
	}
	if _, err := h.q.Complete(bg, "w2", ref(again[0]), []byte("ok")); err != nil {
		h.t.Fatal(err)
	}
	got := h.get(j.ID)
	if got.State != store.Succeeded || string(got.Result) != "ok" || got.Attempt != 2 {
		h.t.Fatalf("final: %+v", got)
	}
}

func bytesDiffer(a, b []byte) bool { return string(a) != string(b) }

func testLateComplete(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	l := h.lease("w", 1, 0)[0]
	h.eventually(5*time.Second, "the lease to expire", func() bool { return h.get(j.ID).State == store.Retrying })
	got := h.get(j.ID)
	if got.LeaseEnd != store.EndExpired || got.LastError == "" {
		h.t.Fatalf("expired: %+v", got)
	}
	// No newer attempt has started (the backoff is an hour): the late
	// result is the first valid one and wins.
	dup, err := h.q.Complete(bg, "w", ref(l), []byte("late"))
	if err != nil || dup {
		h.t.Fatalf("late complete: %v %v", dup, err)
	}
	if got := h.get(j.ID); got.State != store.Succeeded || string(got.Result) != "late" {
		h.t.Fatalf("after the late complete: %+v", got)
	}
}

func testDead(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default", MaxAttempts: 2})[0]
	l := h.lease("w", 1, 0)[0]
	res, err := h.q.Fail(bg, "w", ref(l), "first", false, 0)
	if err != nil || res.State != store.Retrying || res.NextAttempt.IsZero() {
		h.t.Fatalf("first fail: %+v %v", res, err)
	}
	// Fail is idempotent too.
	if again, err := h.q.Fail(bg, "w", ref(l), "first", false, 0); err != nil || !again.Duplicate || again.State != store.Retrying {
		h.t.Fatalf("repeated fail: %+v %v", again, err)
	}
	l2 := h.lease("w", 1, 5*time.Second)
	if len(l2) != 1 || l2[0].Attempt != 2 {
		h.t.Fatalf("second lease: %+v", l2)
	}
	res, err = h.q.Fail(bg, "w", ref(l2[0]), "second", false, 0)
	if err != nil || res.State != store.Dead {
		h.t.Fatalf("last fail: %+v %v", res, err)
	}
	got := h.get(j.ID)
	if got.State != store.Dead || got.LastError != "second" || got.FinishedAt.IsZero() {
		h.t.Fatalf("dead: %+v", got)
	}
	if l := h.lease("w", 1, 0); len(l) != 0 {
		h.t.Fatalf("a dead job was leased: %+v", l)
	}
	r, err := h.q.Retry(bg, j.ID)
	if err != nil || r.State != store.Queued || r.Attempt != 0 || r.LastError != "second" {
		h.t.Fatalf("retry: %+v %v", r, err)
	}
	if _, err := h.q.Retry(bg, j.ID); !errors.Is(err, queue.ErrConflict) {
		h.t.Fatalf("retry of a queued job: %v", err)
	}
	l3 := h.lease("w", 1, 0)
	if len(l3) != 1 || l3[0].Attempt != 1 {
		h.t.Fatalf("after retry: %+v", l3)
	}
	if _, err := h.q.Retry(bg, "nope"); !errors.Is(err, queue.ErrNotFound) {
		h.t.Fatalf("retry of an unknown job: %v", err)
	}
}

func testBackoff(h *harness) {
	// Base and max 400ms with equal jitter: the retry waits 200-400ms.
	j := h.enqueue(queue.NewJob{Queue: "default"})[0]
	l := h.lease("w", 1, 0)[0]
	before := time.Now()
	res, err := h.q.Fail(bg, "w", ref(l), "again", false, 0)
	if err != nil || res.State != store.Retrying {
		h.t.Fatalf("fail: %+v %v", res, err)
	}
	if d := res.NextAttempt.Sub(before); d < 150*time.Millisecond || d > 600*time.Millisecond {
		h.t.Fatalf("next attempt in %s; want about 200-400ms", d)
	}
	if early := h.lease("w", 1, 0); len(early) != 0 {
		h.t.Fatalf("leased during the backoff: %+v", early)
	}
	l2 := h.lease("w", 1, 5*time.Second)
	if len(l2) != 1 || l2[0].ID != j.ID || time.Since(before) < 150*time.Millisecond {
		h.t.Fatalf("after the backoff (%s): %+v", time.Since(before), l2)
	}
}

func testRetryAfterAndPermanent(h *harness) {
	h.enqueue(queue.NewJob{Queue: "default"}, queue.NewJob{Queue: "default"})
	ls := h.lease("w", 2, 0)
	before := time.Now()
	res, err := h.q.Fail(bg, "w", ref(ls[0]), "later", false, time.Hour)
	if err != nil || res.State != store.Retrying {
		h.t.Fatalf("fail with retry-after: %+v %v", res, err)
	}
	if d := res.NextAttempt.Sub(before); d < 59*time.Minute || d > 61*time.Minute {
		h.t.Fatalf("next attempt in %s, want 1h", d)
	}
	res, err = h.q.Fail(bg, "w", ref(ls[1]), "", true, 0)
	if err != nil || res.State != store.Failed {
		h.t.Fatalf("permanent fail: %+v %v", res, err)
	}
	if got := h.get(ls[1].ID); got.LastError == "" {
		h.t.Fatalf("a failure without a message keeps none: %+v", got)
	}
	if _, err := h.q.Fail(bg, "w", ref(ls[1]), "x", false, -time.Second); !errors.Is(err, queue.ErrInvalid) {
		h.t.Fatalf("negative retry-after: %v", err)
	}
}

func testCancel(h *harness) {
	queued := h.enqueue(queue.NewJob{Queue: "default", RunAfter: time.Now().Add(time.Hour)})[0]
	c, err := h.q.Cancel(bg, queued.ID)
	if err != nil || c.State != store.Cancelled {
		h.t.Fatalf("cancel queued: %+v %v", c, err)
	}
	if c, err := h.q.Cancel(bg, queued.ID); err != nil || c.State != store.Cancelled {
		h.t.Fatalf("cancel again: %+v %v", c, err)
	}
	running := h.enqueue(queue.NewJob{Queue: "default"})[0]
	l := h.lease("w", 1, 0)[0]
	if l.ID != running.ID {
		h.t.Fatal("the cancelled job was leased")
	}
	c, err = h.q.Cancel(bg, running.ID)
	if err != nil || c.State != store.Leased || !c.CancelRequested {
		h.t.Fatalf("cancel leased: %+v %v", c, err)
	}
	if st := h.heartbeat("w", false, l); st[0].State != proto.LeaseCancelRequested {
		h.t.Fatalf("heartbeat: %+v", st)
	}
	res, err := h.q.Fail(bg, "w", ref(l), "stopped on request", false, 0)
	if err != nil || res.State != store.Cancelled {
		h.t.Fatalf("fail after cancel: %+v %v", res, err)
	}
	h.restart()
	if got := h.get(running.ID); got.State != store.Cancelled || !got.CancelRequested {
		h.t.Fatalf("after restart: %+v", got)
	}
	h.enqueue(queue.NewJob{Queue: "default"})
	l = h.lease("w", 1, 0)[0]
	if _, err := h.q.Complete(bg, "w", ref(l), nil); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.q.Cancel(bg, l.ID); !errors.Is(err, queue.ErrConflict) {
		h.t.Fatalf("cancel of a succeeded job: %v", err)
	}
	if _, err := h.q.Cancel(bg, "nope"); !errors.Is(err, queue.ErrNotFound) {
		h.t.Fatalf("cancel of an unknown job: %v", err)
	}
	r, err := h.q.Retry(bg, queued.ID)
	if err != nil || r.State != store.Queued || r.CancelRequested {
		h.t.Fatalf("retry of a cancelled job: %+v %v", r, err)
	}
}

func testCancelledLeaseExpires(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	h.lease("w", 1, 0)
	if _, err := h.q.Cancel(bg, j.ID); err != nil {
		h.t.Fatal(err)
	}
	h.eventually(5*time.Second, "the cancelled lease to expire", func() bool { return h.get(j.ID).State == store.Cancelled })
}

func testIdempotencyKeys(h *harness) {
	a := h.enqueue(queue.NewJob{Queue: "default", IdempotencyKey: "k1", Payload: []byte("first")})[0]
	res, err := h.q.Enqueue(bg, []queue.NewJob{
		{Queue: "default", IdempotencyKey: "k1", Payload: []byte("second")},
		{Queue: "default", IdempotencyKey: "k2"},
		{Queue: "default", IdempotencyKey: "k2"},
		{Queue: "other", IdempotencyKey: "k1"},
		{Queue: "default"},
	})
	if err != nil {
		h.t.Fatal(err)
	}
	if !res[0].Existing || res[0].Job.ID != a.ID || string(res[0].Job.Payload) != "first" {
		h.t.Fatalf("same key: %+v", res[0])
	}
	if res[1].Existing || !res[2].Existing || res[2].Job.ID != res[1].Job.ID {
		h.t.Fatalf("a key twice in one batch: %+v / %+v", res[1], res[2])
	}
	if res[3].Existing || res[3].Job.ID == a.ID {
		h.t.Fatalf("the same key in another queue: %+v", res[3])
	}
	if res[4].Existing {
		h.t.Fatalf("no key: %+v", res[4])
	}
	// The key holds after the job finished, and across a restart.
	l := h.lease("w", 1, 0)[0]
	if _, err := h.q.Complete(bg, "w", ref(l), nil); err != nil {
		h.t.Fatal(err)
	}
	h.restart()
	again, err := h.q.Enqueue(bg, []queue.NewJob{{Queue: "default", IdempotencyKey: "k1"}})
	if err != nil || !again[0].Existing || again[0].Job.ID != a.ID {
		h.t.Fatalf("after completion and restart: %+v %v", again, err)
	}
	// Concurrent enqueues of one key make one job.
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.q.Enqueue(bg, []queue.NewJob{{Queue: "default", IdempotencyKey: "race"}})
			if err != nil {
				h.t.Error(err)
				return
			}
			ids[i] = r[0].Job.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			h.t.Fatalf("concurrent enqueues of one key made several jobs: %v", ids)
		}
	}
	if _, err := h.q.Enqueue(bg, []queue.NewJob{{Queue: "default", IdempotencyKey: "bad\x00key"}}); !errors.Is(err, queue.ErrInvalid) {
		h.t.Fatalf("a key with a zero byte: %v", err)
	}
}

func testRestartGrace(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	l := h.lease("w", 1, 0)[0]
	if err := h.q.Close(); err != nil {
		h.t.Fatal(err)
	}
	time.Sleep(1200 * time.Millisecond) // past the lease's deadline
	h.q = h.open()
	// The worker that was mid-job gets its lease duration to heartbeat.
	if st := h.heartbeat("w", false, l); st[0].State != proto.LeaseHeld {
		h.t.Fatalf("heartbeat after restart: %+v", st)
	}
	if got := h.get(j.ID); got.State != store.Leased || got.Attempt != 1 {
		h.t.Fatalf("after restart: %+v", got)
	}
	// Without more heartbeats it is redelivered.
	again := h.lease("w2", 1, 5*time.Second)
	if len(again) != 1 || again[0].Attempt != 2 {
		h.t.Fatalf("after the grace: %+v", again)
	}
}

func testCaps(h *harness) {
	_, err := h.q.Enqueue(bg, []queue.NewJob{{Queue: "default", Payload: make([]byte, 11)}})
	var ie *queue.InvalidError
	if !errors.As(err, &ie) || ie.Field != "payload" {
		h.t.Fatalf("payload over the cap: %v", err)
	}
	_, err = h.q.Enqueue(bg, []queue.NewJob{{Queue: "default"}, {Queue: "default", Payload: make([]byte, 11)}})
	if !errors.As(err, &ie) || ie.Field != "jobs[1].payload" {
		h.t.Fatalf("payload over the cap in a batch: %v", err)
	}
	for _, bad := range []queue.NewJob{
		{Queue: ""},
		{Queue: "default", LeaseDuration: time.Millisecond},
		{Queue: "default", MaxAttempts: queue.MaxAttemptsLimit + 1},
	} {
		if _, err := h.q.Enqueue(bg, []queue.NewJob{bad}); !errors.Is(err, queue.ErrInvalid) {
			h.t.Errorf("enqueue %+v: %v, want invalid", bad, err)
		}
	}
	if l, _, _ := h.q.List(bg, store.Filter{}); len(l) != 0 {
		h.t.Fatalf("a refused batch left jobs: %+v", l)
	}
	h.enqueue(queue.NewJob{Queue: "default", Payload: make([]byte, 10)})
	l := h.lease("w", 1, 0)[0]
	if _, err := h.q.Complete(bg, "w", ref(l), make([]byte, 6)); !errors.As(err, &ie) || ie.Field != "result" {
		h.t.Fatalf("result over the cap: %v", err)
	}
	if got := h.get(l.ID); got.State != store.Leased {
		h.t.Fatalf("a refused result changed the job: %+v", got)
	}
	if _, err := h.q.Complete(bg, "w", ref(l), make([]byte, 5)); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.q.Lease(bg, queue.LeaseRequest{Worker: "w", Max: 1}); !errors.Is(err, queue.ErrInvalid) {
		h.t.Fatalf("lease naming no queue: %v", err)
	}
}

func testRunAfter(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default", RunAfter: time.Now().Add(300 * time.Millisecond)})[0]
	if l := h.lease("w", 1, 0); len(l) != 0 {
		h.t.Fatalf("leased before run_after: %+v", l)
	}
	start := time.Now()
	l := h.lease("w", 1, 5*time.Second)
	if len(l) != 1 || l[0].ID != j.ID {
		h.t.Fatalf("after run_after: %+v", l)
	}
	if time.Since(start) > 3*time.Second {
		h.t.Fatalf("a long poll took %s to see a job due in 300ms", time.Since(start))
	}
}

func testLongPoll(h *harness) {
	got := make(chan []store.Job, 1)
	go func() {
		jobs, err := h.q.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1, Wait: 10 * time.Second})
		if err != nil {
			h.t.Error(err)
		}
		got <- jobs
	}()
	time.Sleep(100 * time.Millisecond)
	j := h.enqueue(queue.NewJob{Queue: "default"})[0]
	select {
	case jobs := <-got:
		if len(jobs) != 1 || jobs[0].ID != j.ID {
			h.t.Fatalf("long poll: %+v", jobs)
		}
	case <-time.After(8 * time.Second):
		h.t.Fatal("the long poll was not woken by an enqueue")
	}
	// An empty wait ends empty, without an error.
	start := time.Now()
	if jobs := h.lease("w", 1, 200*time.Millisecond); len(jobs) != 0 || time.Since(start) < 150*time.Millisecond {
		h.t.Fatalf("empty wait: %+v after %s", jobs, time.Since(start))
	}
	// A cancelled context ends the wait.
	ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
	defer cancel()
	jobs, err := h.q.Lease(ctx, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1, Wait: 10 * time.Second})
	if len(jobs) != 0 || !errors.Is(err, context.DeadlineExceeded) {
		h.t.Fatalf("lease with an ended context: %+v %v", jobs, err)
	}
}

func testUnlease(h *harness) {
	j := h.enqueue(queue.NewJob{Queue: "default"})[0]
	l := h.lease("w", 1, 0)[0]
	h.q.Unlease("w", []queue.Ref{ref(l)})
	if got := h.get(j.ID); got.State != store.Queued || got.Attempt != 0 {
		h.t.Fatalf("after unlease: %+v", got)
	}
	again := h.lease("w", 1, 0)
	if len(again) != 1 || again[0].Attempt != 1 {
		h.t.Fatalf("re-lease: %+v", again)
	}
	if _, err := h.q.Complete(bg, "w", ref(l), nil); !errors.Is(err, queue.ErrLeaseLost) {
		h.t.Fatalf("the undone lease still works: %v", err)
	}
}

func testRelease(h *harness) {
	h.enqueue(queue.NewJob{Queue: "default"}, queue.NewJob{Queue: "default"})
	ls := h.lease("w", 2, 0)
	if len(ls) != 2 {
		h.t.Fatal(len(ls))
	}
	h.heartbeat("w", true, ls[0]) // too young to release
	if got := h.get(ls[1].ID); got.State != store.Leased {
		h.t.Fatalf("released within the grace: %+v", got)
	}
	time.Sleep(300 * time.Millisecond)
	h.heartbeat("w", true, ls[0])
	if got := h.get(ls[0].ID); got.State != store.Leased {
		h.t.Fatalf("the listed lease: %+v", got)
	}
	got := h.get(ls[1].ID)
	if got.State != store.Retrying || got.LeaseEnd != store.EndReleased {
		h.t.Fatalf("the unlisted lease: %+v", got)
	}
	again := h.lease("w2", 1, 0)
	if len(again) != 1 || again[0].ID != ls[1].ID || again[0].Attempt != 2 {
		h.t.Fatalf("released job: %+v", again)
	}
}

func testMaxLeases(h *harness) {
	for range 3 {
		h.enqueue(queue.NewJob{Queue: "default"})
	}
	if n := len(h.lease("w", 10, 0)); n != 2 {
		h.t.Fatalf("leased %d, cap 2", n)
	}
	_, err := h.q.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1})
	if !errors.Is(err, queue.ErrTooManyLeases) {
		h.t.Fatalf("lease past the cap: %v", err)
	}
	if n := len(h.lease("other", 10, 0)); n != 1 {
		h.t.Fatalf("another worker leased %d", n)
	}
}

func testOrder(h *harness) {
	a := h.enqueue(queue.NewJob{Queue: "a"})[0]
	time.Sleep(2 * time.Millisecond)
	b := h.enqueue(queue.NewJob{Queue: "b"})[0]
	h.enqueue(queue.NewJob{Queue: "c"})
	got := h.lease("w", 5, 0, "b", "a")
	if len(got) != 2 || got[0].ID != a.ID || got[1].ID != b.ID {
		h.t.Fatalf("leased %+v; want a then b", got)
	}
	for range 3 {
		h.enqueue(queue.NewJob{Queue: "big", Payload: make([]byte, 100)})
	}
	jobs, err := h.q.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"big"}, Max: 3, MaxBytes: 250})
	if err != nil || len(jobs) != 2 {
		h.t.Fatalf("leased %d (%v), want 2 within 250 bytes", len(jobs), err)
	}
	if rest := h.lease("w", 3, 0, "big"); len(rest) != 1 || rest[0].Attempt != 1 {
		h.t.Fatalf("the job left out of the answer: %+v", rest)
	}
}

func testConcurrent(h *harness) {
	const jobs, workers = 300, 8
	batch := make([]queue.NewJob, jobs)
	for i := range batch {
		batch[i] = queue.NewJob{Queue: "default", Payload: fmt.Appendf(nil, "%d", i)}
	}
	h.enqueue(batch...)
	var mu sync.Mutex
	done := map[string]int{}
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := fmt.Sprintf("w%d", w)
			for {
				ls, err := h.q.Lease(bg, queue.LeaseRequest{Worker: name, Queues: []string{"default"}, Max: 7, Wait: 200 * time.Millisecond})
				if err != nil {
					h.t.Error(err)
					return
				}
				if len(ls) == 0 {
					return
				}
				for _, l := range ls {
					dup, err := h.q.Complete(bg, name, ref(l), l.Payload)
					if err != nil || dup {
						h.t.Errorf("complete %s: %v %v", l.ID, dup, err)
						continue
					}
					mu.Lock()
					done[l.ID]++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if len(done) != jobs {
		h.t.Fatalf("%d jobs completed, want %d", len(done), jobs)
	}
	for id, n := range done {
		if n != 1 {
			h.t.Fatalf("job %s completed %d times", id, n)
		}
		if got := h.get(id); got.State != store.Succeeded || string(got.Result) != string(got.Payload) {
			h.t.Fatalf("job %s: %+v", id, got)
		}
	}
}

func testList(h *harness) {
	var ids []string
	for i := range 5 {
		name := "a"
		if i%2 == 1 {
			name = "b"
		}
		ids = append(ids, h.enqueue(queue.NewJob{Queue: name})[0].ID)
	}
	page, next, err := h.q.List(bg, store.Filter{Limit: 2})
	if err != nil || len(page) != 2 || page[0].ID != ids[0] || next == "" {
		h.t.Fatalf("first page: %d jobs, next %q, %v", len(page), next, err)
	}
	var all []string
	for cursor := ""; ; {
		page, next, err := h.q.List(bg, store.Filter{Limit: 2, After: cursor})
		if err != nil {
			h.t.Fatal(err)
		}
		for _, j := range page {
			all = append(all, j.ID)
		}
		if next == "" {
			break
		}
		cursor = next
	}
	if fmt.Sprint(all) != fmt.Sprint(ids) {
		h.t.Fatalf("all pages: %v, want %v", all, ids)
	}
	bs, _, err := h.q.List(bg, store.Filter{Queue: "b", State: store.Queued})
	if err != nil || len(bs) != 2 {
		h.t.Fatalf("queue b: %d jobs, %v", len(bs), err)
	}
	if _, _, err := h.q.List(bg, store.Filter{State: "bogus"}); !errors.Is(err, queue.ErrInvalid) {
		h.t.Fatalf("unknown state: %v", err)
	}
}

// testPause: a paused queue leases nothing, takes enqueues, stays paused
// across a restart, and a resume wakes a parked long poll.
func testPause(h *harness) {
	if got, err := h.q.Paused(bg); err != nil || len(got) != 0 {
		h.t.Fatalf("paused at start: %v %v", got, err)
	}
	if err := h.q.Pause(bg, "bad name!"); !errors.Is(err, queue.ErrInvalid) {
		h.t.Fatalf("pausing a bad name: %v, want ErrInvalid", err)
	}
	h.enqueue(queue.NewJob{Queue: "default"})
	if err := h.q.Pause(bg, "default"); err != nil {
		h.t.Fatal(err)
	}
	if err := h.q.Pause(bg, "default"); err != nil {
		h.t.Fatalf("pausing twice: %v", err)
	}
	other := h.enqueue(queue.NewJob{Queue: "other"}, queue.NewJob{Queue: "default"})
	if got := h.lease("w", 10, 0); len(got) != 0 {
		h.t.Fatalf("leased from a paused queue: %+v", got)
	}
	// A lease naming a paused and an unpaused queue gets the unpaused
	// one's job only.
	if got := h.lease("w", 10, 0, "default", "other"); len(got) != 1 || got[0].ID != other[0].ID {
		h.t.Fatalf("lease of default and other: %+v, want only %s", got, other[0].ID)
	}
	start := time.Now()
	if got := h.lease("w", 10, 300*time.Millisecond); len(got) != 0 || time.Since(start) < 250*time.Millisecond {
		h.t.Fatalf("long poll on a paused queue: %+v after %s", got, time.Since(start))
	}
	if c := h.get(other[1].ID); c.State != store.Queued {
		h.t.Fatalf("job enqueued while paused: %+v", c)
	}
	h.restart()
	if got, err := h.q.Paused(bg); err != nil || len(got) != 1 || got[0] != "default" {
		h.t.Fatalf("paused after a restart: %v %v, want [default]", got, err)
	}
	if got := h.lease("w", 10, 0); len(got) != 0 {
		h.t.Fatalf("leased from a paused queue after a restart: %+v", got)
	}
	got := make(chan []store.Job, 1)
	go func() {
		jobs, err := h.q.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 10, Wait: 10 * time.Second})
		if err != nil {
			h.t.Error(err)
		}
		got <- jobs
	}()
	time.Sleep(100 * time.Millisecond)
	if err := h.q.Resume(bg, "default"); err != nil {
		h.t.Fatal(err)
	}
	select {
	case jobs := <-got:
		if len(jobs) != 2 {
			h.t.Fatalf("after resume the long poll got %d jobs, want 2: %+v", len(jobs), jobs)
		}
	case <-time.After(8 * time.Second):
		h.t.Fatal("a resume did not wake the long poll")
	}
	if got, err := h.q.Paused(bg); err != nil || len(got) != 0 {
		h.t.Fatalf("paused after resume: %v %v", got, err)
	}
	if err := h.q.Resume(bg, "default"); err != nil {
		h.t.Fatalf("resuming a queue not paused: %v", err)
	}
}

// testDelete: only a finished job can be deleted; it is gone (from Get,
// List, and after a restart) and its idempotency key is free again.
func testDelete(h *harness) {
	jobs := h.enqueue(queue.NewJob{Queue: "default"}, queue.NewJob{Queue: "default", IdempotencyKey: "k"})
	a, b := jobs[0], jobs[1]
	if _, err := h.q.Delete(bg, a.ID); !errors.Is(err, queue.ErrConflict) {
		h.t.Fatalf("deleting a queued job: %v, want ErrConflict", err)
	}
	l := h.lease("w", 1, 0)
	if len(l) != 1 || l[0].ID != a.ID {
		h.t.Fatalf("lease: %+v", l)
	}
	if _, err := h.q.Delete(bg, a.ID); !errors.Is(err, queue.ErrConflict) {
		h.t.Fatalf("deleting a leased job: %v, want ErrConflict", err)
	}
	if _, err := h.q.Complete(bg, "w", ref(l[0]), []byte("r")); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.q.Cancel(bg, b.ID); err != nil {
		h.t.Fatal(err)
	}
	got, err := h.q.Delete(bg, a.ID)
	if err != nil || got.ID != a.ID || got.State != store.Succeeded {
		h.t.Fatalf("deleting a succeeded job: %+v, %v", got, err)
	}
	if _, err := h.q.Get(bg, a.ID); !errors.Is(err, queue.ErrNotFound) {
		h.t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := h.q.Delete(bg, a.ID); !errors.Is(err, queue.ErrNotFound) {
		h.t.Fatalf("deleting twice: %v, want ErrNotFound", err)
	}
	if _, err := h.q.Delete(bg, "no-such-job"); !errors.Is(err, queue.ErrNotFound) {
		h.t.Fatalf("deleting an unknown id: %v, want ErrNotFound", err)
	}
	if got, err := h.q.Delete(bg, b.ID); err != nil || got.State != store.Cancelled {
		h.t.Fatalf("deleting a cancelled job: %+v, %v", got, err)
	}
	h.restart()
	for _, id := range []string{a.ID, b.ID} {
		if _, err := h.q.Get(bg, id); !errors.Is(err, queue.ErrNotFound) {
			h.t.Fatalf("get %s after delete and restart: %v, want ErrNotFound", id, err)
		}
	}
	if list, _, err := h.q.List(bg, store.Filter{Queue: "default"}); err != nil || len(list) != 0 {
		h.t.Fatalf("list after delete: %+v, %v", list, err)
	}
	res, err := h.q.Enqueue(bg, []queue.NewJob{{Queue: "default", IdempotencyKey: "k"}})
	if err != nil || res[0].Existing || res[0].Job.ID == b.ID {
		h.t.Fatalf("enqueue with a deleted job's key: %+v, %v; want a new job", res, err)
	}
}
