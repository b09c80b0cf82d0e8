package pgqueue_test

import (
	"net/url"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Rates counts every replica's jobs, and only the last minute's.
func TestRatesAcrossReplicas(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	a, b := open(t, fast(dsn, queue.Options{})), open(t, fast(dsn, queue.Options{}))
	defer a.Close()
	defer b.Close()
	enqueue(t, a, queue.NewJob{Queue: "r"}, queue.NewJob{Queue: "r"})
	jobs, err := b.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"r"}, Max: 2})
	if err != nil || len(jobs) != 2 {
		t.Fatalf("lease on b: %d jobs, %v", len(jobs), err)
	}
	if _, err := b.Complete(bg, "w", ref(jobs[0]), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Fail(bg, "w", ref(jobs[1]), "no", true, 0); err != nil {
		t.Fatal(err)
	}
	got, err := a.Rates(bg)
	if want := (queue.Rate{Enqueued: 2, Completed: 1, Failed: 1}); err != nil || len(got) != 1 || got["r"] != want {
		t.Fatalf("a's Rates = %+v, %v; want r: %+v", got, err, want)
	}

	// Two minutes on, by the database's clock: nothing in the window.
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	srv.Exec(t, strings.TrimPrefix(u.Path, "/"), `UPDATE relay_jobs SET created_at = created_at - interval '2 minutes', finished_at = finished_at - interval '2 minutes'`)
	if got, err := b.Rates(bg); err != nil || len(got) != 0 {
		t.Fatalf("after the window: %+v, %v", got, err)
	}
}
