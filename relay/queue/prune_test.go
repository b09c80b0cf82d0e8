package queue

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Prune deletes finished jobs older than the cutoff, in batches, with
// their idempotency keys, and leaves live and younger jobs alone; the
// deletions hold across a restart.
func TestPrune(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{})
	// More finished jobs than one batch deletes.
	var old []store.Job
	for range 3 {
		batch := make([]NewJob, MaxBatch/2+100)
		for i := range batch {
			batch[i] = NewJob{Queue: "default", Payload: []byte("old")}
		}
		old = append(old, h.enqueue(batch...)...)
	}
	keyed := h.enqueue(NewJob{Queue: "default", IdempotencyKey: "k", Payload: []byte("keyed")})[0]
	old = append(old, keyed)
	for _, j := range old {
		if _, err := h.q.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now()
	time.Sleep(2 * time.Millisecond)
	young := h.enqueue(NewJob{Queue: "default", Payload: []byte("young")})[0]
	if _, err := h.q.Cancel(ctx, young.ID); err != nil {
		t.Fatal(err)
	}
	live := h.enqueue(NewJob{Queue: "default", Payload: []byte("live")})[0]

	if len(old) <= pruneBatch {
		t.Fatalf("the test needs more finished jobs than one batch (%d)", pruneBatch)
	}
	n, err := h.q.Prune(ctx, cutoff)
	if err != nil || n != len(old) {
		t.Fatalf("Prune = %d, %v; want %d", n, err, len(old))
	}
	for _, j := range []store.Job{old[0], old[len(old)/2], keyed} {
		if _, err := h.q.Get(ctx, j.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("pruned job %s: Get = %v, want not found", j.ID, err)
		}
	}
	// The key is free again.
	res, err := h.q.Enqueue(ctx, []NewJob{{Queue: "default", IdempotencyKey: "k", Payload: []byte("again")}})
	if err != nil || res[0].Existing || res[0].Job.ID == keyed.ID {
		t.Fatalf("enqueue with a pruned job's key: %+v %v", res, err)
	}
	for _, j := range []store.Job{young, live} {
		if _, err := h.q.Get(ctx, j.ID); err != nil {
			t.Fatalf("job %s should stay: %v", j.ID, err)
		}
	}
	if c := h.q.Counts()[store.QueueState{Queue: "default", State: store.Cancelled}]; c != 1 {
		t.Fatalf("%d cancelled jobs counted, want 1 (the young one)", c)
	}
	if n, err := h.q.Prune(ctx, cutoff); err != nil || n != 0 {
		t.Fatalf("second Prune = %d, %v; want 0", n, err)
	}

	h.reopen()
	if _, err := h.q.Get(ctx, old[1].ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after restart the pruned job is back: %v", err)
	}
	counts, err := h.st.Counts(ctx)
	if err != nil || counts[store.QueueState{Queue: "default", State: store.Cancelled}] != 1 || counts[store.QueueState{Queue: "default", State: store.Queued}] != 2 {
		t.Fatalf("counts in the file after restart: %v %v", counts, err)
	}
}

// A job retried after it finished is live again and is not pruned, though
// it finished before the cutoff.
func TestPruneSkipsRetried(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{})
	j := h.enqueue(NewJob{Queue: "default"})[0]
	if _, err := h.q.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	cutoff := time.Now()
	if _, err := h.q.Retry(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	if n, err := h.q.Prune(ctx, cutoff); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v; want 0", n, err)
	}
	if got, err := h.q.Get(ctx, j.ID); err != nil || got.State != store.Queued {
		t.Fatalf("retried job: %+v %v", got, err)
	}
}

// With Options.Retain the queue prunes on its own.
func TestRetain(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{Retain: time.Millisecond})
	j := h.enqueue(NewJob{Queue: "default"})[0]
	if _, err := h.q.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	// With a retention this short the queue prunes at every wake-up (at
	// least every second).
	for i := 0; ; i++ {
		_, err := h.q.Get(ctx, j.ID)
		if errors.Is(err, ErrNotFound) {
			return
		}
		if i == 100 {
			t.Fatalf("the cancelled job is still there after 5s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A failed job stays until it is retried or deleted, as on PostgreSQL.
func TestPruneKeepsFailed(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{})
	h.enqueue(NewJob{Queue: "default"})
	l := h.lease("w", 1, 0, "default")[0]
	if _, err := h.q.Fail(ctx, "w", Ref{JobID: l.ID, Attempt: l.Attempt, Token: l.LeaseToken}, "no", true, 0); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Millisecond)
	if n, err := h.q.Prune(ctx, time.Now()); err != nil || n != 0 {
		t.Fatalf("Prune = %d, %v; want 0", n, err)
	}
	if got := h.get(l.ID); got.State != store.Failed {
		t.Fatalf("failed job: %+v", got)
	}
}

// Once no job is live the index gives its memory back, and works again
// after.
func TestIndexShrinksWhenDrained(t *testing.T) {
	ctx := context.Background()
	h := newHarness(t, Options{})
	batch := make([]NewJob, MaxBatch)
	for i := range batch {
		batch[i] = NewJob{Queue: "default"}
	}
	var jobs []store.Job
	for range arenaChunk/MaxBatch + 2 { // more than one block
		jobs = append(jobs, h.enqueue(batch...)...)
	}
	for _, j := range jobs {
		if _, err := h.q.Cancel(ctx, j.ID); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; ; i++ {
		h.q.mu.Lock()
		chunks, slots := len(h.q.arena.chunks), len(h.q.byID.slots)
		h.q.mu.Unlock()
		if chunks == 0 && slots == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("after 5s the drained index still holds %d blocks and %d id slots", chunks, slots)
		}
		time.Sleep(50 * time.Millisecond)
	}
	j := h.enqueue(NewJob{Queue: "default", Payload: []byte("again")})[0]
	l := h.lease("w", 1, 0, "default")
	if len(l) != 1 || l[0].ID != j.ID || string(l[0].Payload) != "again" {
		t.Fatalf("after shrinking: leased %+v", l)
	}
	if _, err := h.q.Complete(ctx, "w", Ref{JobID: j.ID, Attempt: 1, Token: l[0].LeaseToken}, nil); err != nil {
		t.Fatal(err)
	}
}
