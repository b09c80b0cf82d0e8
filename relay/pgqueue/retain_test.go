package pgqueue_test

import (
	"errors"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Finished jobs older than Retain are pruned by the replicas; unfinished
// ones and recently finished ones stay.
func TestRetain(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	keep := open(t, fast(dsn, queue.Options{}))
	defer keep.Close()
	jobs := enqueue(t, keep, queue.NewJob{Queue: "default"}, queue.NewJob{Queue: "default"}, queue.NewJob{Queue: "default"})
	leased, err := keep.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1})
	if err != nil || len(leased) != 1 {
		t.Fatalf("lease: %d jobs, %v", len(leased), err)
	}
	if _, err := keep.Complete(bg, "w", ref(leased[0]), []byte("r")); err != nil {
		t.Fatal(err)
	}
	if _, err := keep.Cancel(bg, jobs[2].ID); err != nil {
		t.Fatal(err)
	}
	// One finished a day ago, the other a moment ago.
	srv.Exec(t, "test1", "UPDATE relay_jobs SET finished_at = now() - interval '1 day' WHERE id = '"+leased[0].ID+"'")

	o := fast(dsn, queue.Options{})
	o.Retain, o.PruneInterval = time.Hour, 50*time.Millisecond
	for range 2 { // two replicas pruning at once
		p := open(t, o)
		defer p.Close()
	}
	eventually(t, 10*time.Second, "the day-old job to be pruned", func() bool {
		_, err := keep.Get(bg, leased[0].ID)
		return errors.Is(err, queue.ErrNotFound)
	})
	for _, j := range jobs {
		if j.ID == leased[0].ID {
			continue
		}
		if _, err := keep.Get(bg, j.ID); err != nil {
			t.Fatalf("job %s (queued, or finished a moment ago) was pruned: %v", j.ID, err)
		}
	}
}
