package pgqueue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// The live-job and live-byte limits refuse enqueues with ErrFull: at
// once for this replica's own jobs, and after the next count for another
// replica's; room comes back once jobs finish and are counted.
func TestLiveLimits(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	opts := fast(dsn, queue.Options{MaxLiveJobs: 3, MaxLiveBytes: 100})
	a := open(t, opts)
	defer a.Close()
	b := open(t, opts)
	defer b.Close()

	enqueue(t, a, queue.NewJob{Queue: "default"}, queue.NewJob{Queue: "default"})
	if _, err := a.Enqueue(bg, []queue.NewJob{{Queue: "default"}, {Queue: "default"}}); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("two more jobs past a limit of 3 on the same replica: %v", err)
	}
	eventually(t, 5*time.Second, "the other replica to count the first one's jobs", func() bool {
		return b.Counts()[store.QueueState{Queue: "default", State: store.Queued}] == 2
	})
	if _, err := b.Enqueue(bg, []queue.NewJob{{Queue: "default"}, {Queue: "default"}}); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("two more jobs past a limit of 3 on another replica: %v", err)
	}
	if _, err := b.Enqueue(bg, []queue.NewJob{{Queue: "default", Payload: make([]byte, 101)}}); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("a payload past the byte limit: %v", err)
	}

	jobs, err := a.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 2})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("lease: %d jobs, %v", len(jobs), err)
	}
	for _, j := range jobs {
		if _, err := a.Complete(bg, "w", ref(j), nil); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, 5*time.Second, "room after the jobs finished", func() bool {
		_, err := b.Enqueue(bg, []queue.NewJob{{Queue: "default"}, {Queue: "default"}, {Queue: "default"}})
		return err == nil
	})
	if _, err := b.Enqueue(bg, []queue.NewJob{{Queue: "default"}}); !errors.Is(err, queue.ErrFull) {
		t.Fatalf("a fourth live job: %v", err)
	}
}
