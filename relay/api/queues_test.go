package api

import (
	"context"
	"net/http"
	"testing"

	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// GET /v1/queues counts each queue's jobs by state, and shows a producer
// only the queues it may read.
func TestQueues(t *testing.T) {
	readA, readAHash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	enqOnly, enqOnlyHash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, queue.Options{},
		producers.Entry("reader-a", nil, []producers.TokenHash{readAHash}, map[string][]producers.Action{"a": {producers.Read}}),
		producers.Entry("enqueuer", nil, []producers.TokenHash{enqOnlyHash}, map[string][]producers.Action{producers.AnyQueue: {producers.Enqueue}}))
	ctx := context.Background()

	qs, err := e.c.Queues(ctx)
	if err != nil || len(qs) != 0 {
		t.Fatalf("no jobs yet: %+v, %v", qs, err)
	}
	first, err := e.c.Enqueue(ctx, JobRequest{Queue: "a", PayloadText: "1"})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.c.Enqueue(ctx, JobRequest{Queue: "a", PayloadText: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Enqueue(ctx, JobRequest{Queue: "b", PayloadText: "3"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Cancel(ctx, first.ID); err != nil {
		t.Fatal(err)
	}

	qs, err = e.c.Queues(ctx)
	if err != nil || len(qs) != 2 || qs[0].Name != "a" || qs[1].Name != "b" {
		t.Fatalf("admin: %+v, %v", qs, err)
	}
	a := qs[0]
	if a.Counts["queued"] != 1 || a.Counts["cancelled"] != 1 || a.Counts["succeeded"] != 0 || len(a.Counts) != 7 {
		t.Errorf("queue a counts %v; want queued 1, cancelled 1, every state listed", a.Counts)
	}
	if a.OldestQueuedAt == nil || !a.OldestQueuedAt.Equal(second.CreatedAt) {
		t.Errorf("queue a's oldest queued at %v; want the second job's %v (the first is cancelled)", a.OldestQueuedAt, second.CreatedAt)
	}
	if qs[1].Counts["queued"] != 1 || qs[1].OldestQueuedAt == nil {
		t.Errorf("queue b: %+v", qs[1])
	}
	// Two new jobs in a, one in b, over the last minute; a cancel is no
	// failure.
	if want := (QueueRate{WindowSeconds: 60, EnqueuedPerSecond: 2.0 / 60}); a.Rate != want {
		t.Errorf("queue a's rate %+v, want %+v", a.Rate, want)
	}
	if want := (QueueRate{WindowSeconds: 60, EnqueuedPerSecond: 1.0 / 60}); qs[1].Rate != want {
		t.Errorf("queue b's rate %+v, want %+v", qs[1].Rate, want)
	}

	qs, err = e.client(nil, readA).Queues(ctx)
	if err != nil || len(qs) != 1 || qs[0].Name != "a" {
		t.Fatalf("reader of a sees %+v, %v; want only a", qs, err)
	}
	qs, err = e.client(nil, enqOnly).Queues(ctx)
	if err != nil || len(qs) != 0 {
		t.Fatalf("a producer that may read no queue sees %+v, %v", qs, err)
	}
	if _, err := e.client(nil, "").Queues(ctx); err == nil {
		t.Fatal("no credentials: listed the queues")
	}
	var out QueuesResponse
	err = e.c.do(ctx, http.MethodGet, "/v1/queues?state=queued", nil, &out)
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusBadRequest {
		t.Fatalf("a query parameter: %v", err)
	}
}

// POST /v1/queues/NAME/pause and /resume need the cancel action on the
// queue; GET /v1/queues shows the pause, even of a queue with no jobs.
func TestPauseResume(t *testing.T) {
	readA, readAHash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	cancelA, cancelAHash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, queue.Options{},
		producers.Entry("reader-a", nil, []producers.TokenHash{readAHash}, map[string][]producers.Action{"a": {producers.Read}}),
		producers.Entry("canceller-a", nil, []producers.TokenHash{cancelAHash}, map[string][]producers.Action{"a": {producers.Read, producers.Cancel}}))
	ctx := context.Background()

	_, err = e.client(nil, readA).PauseQueue(ctx, "a")
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusForbidden || ae.Field != "queue" {
		t.Fatalf("a reader paused queue a: %v; want 403 naming the queue", err)
	}
	if _, err := e.client(nil, cancelA).PauseQueue(ctx, "b"); err == nil {
		t.Fatal("a producer without cancel on b paused it")
	}
	_, err = e.c.PauseQueue(ctx, "bad name")
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusBadRequest || ae.Field != "queue" {
		t.Fatalf("pausing a bad name: %v; want 400 naming the queue", err)
	}
	res, err := e.client(nil, cancelA).PauseQueue(ctx, "a")
	if err != nil || res != (PauseResponse{Name: "a", Paused: true}) {
		t.Fatalf("pause: %+v, %v", res, err)
	}
	qs, err := e.client(nil, readA).Queues(ctx)
	if err != nil || len(qs) != 1 || qs[0].Name != "a" || !qs[0].Paused || qs[0].Counts["queued"] != 0 {
		t.Fatalf("queues while a is paused and empty: %+v, %v", qs, err)
	}
	// Enqueues go on while paused.
	if _, err := e.c.Enqueue(ctx, JobRequest{Queue: "a", PayloadText: "1"}); err != nil {
		t.Fatalf("enqueue to a paused queue: %v", err)
	}
	res, err = e.client(nil, cancelA).ResumeQueue(ctx, "a")
	if err != nil || res != (PauseResponse{Name: "a", Paused: false}) {
		t.Fatalf("resume: %+v, %v", res, err)
	}
	qs, err = e.c.Queues(ctx)
	if err != nil || len(qs) != 1 || qs[0].Paused || qs[0].Counts["queued"] != 1 {
		t.Fatalf("queues after resume: %+v, %v", qs, err)
	}
	var out PauseResponse
	err = e.c.do(ctx, http.MethodPost, "/v1/queues/a/pause", map[string]int{"x": 1}, &out)
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusBadRequest {
		t.Fatalf("a pause with a body: %v", err)
	}
}
