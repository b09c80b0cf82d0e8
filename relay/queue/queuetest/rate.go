package queuetest

import (
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// testRates: Rates counts new jobs (not idempotent repeats), completed
// ones and ones that failed for good, per queue.
func testRates(h *harness) {
	h.enqueue(queue.NewJob{Queue: "ra", IdempotencyKey: "k"}, queue.NewJob{Queue: "ra"}, queue.NewJob{Queue: "ra"}, queue.NewJob{Queue: "rb"})
	h.enqueue(queue.NewJob{Queue: "ra", IdempotencyKey: "k"}) // a repeat: not new
	jobs := h.lease("w", 3, 0, "ra")
	if len(jobs) != 3 {
		h.t.Fatalf("leased %d jobs of ra, want 3", len(jobs))
	}
	for _, j := range jobs[:2] {
		if _, err := h.q.Complete(bg, "w", ref(j), nil); err != nil {
			h.t.Fatal(err)
		}
	}
	if _, err := h.q.Fail(bg, "w", ref(jobs[2]), "no", true, 0); err != nil {
		h.t.Fatal(err)
	}
	got, err := h.q.Rates(bg)
	if err != nil {
		h.t.Fatal(err)
	}
	want := map[string]queue.Rate{"ra": {Enqueued: 3, Completed: 2, Failed: 1}, "rb": {Enqueued: 1}}
	if len(got) != len(want) || got["ra"] != want["ra"] || got["rb"] != want["rb"] {
		h.t.Fatalf("Rates = %+v, want %+v", got, want)
	}
}
