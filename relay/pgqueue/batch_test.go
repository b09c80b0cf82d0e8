package pgqueue_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// openEmbedded is the embedded store on a bbolt file, closed with the test.
func openEmbedded(t testing.TB, opts queue.Options) queue.Backend {
	t.Helper()
	st, err := store.OpenBolt(store.BoltOptions{Path: filepath.Join(t.TempDir(), "relay.db")})
	if err != nil {
		t.Fatal(err)
	}
	opts.Store = st
	q, err := queue.Open(bg, opts)
	if err != nil {
		_ = st.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close(); _ = st.Close() })
	return q
}

// queue.CompleteBatch answers each completion as Complete would, on both
// stores: the PostgreSQL one in one statement, the embedded one by
// completing each.
func TestCompleteBatch(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	backends := map[string]func(t *testing.T) queue.Backend{
		"postgres": func(t *testing.T) queue.Backend {
			q := open(t, fast(srv.NewDB(t), queue.Options{}))
			t.Cleanup(func() { _ = q.Close() })
			return q
		},
		"embedded": func(t *testing.T) queue.Backend { return openEmbedded(t, queue.Options{MaxResult: 16}) },
	}
	for name, openB := range backends {
		t.Run(name, func(t *testing.T) {
			q := openB(t)
			var jobs []queue.NewJob
			for i := range 4 {
				jobs = append(jobs, queue.NewJob{Queue: "default", Payload: fmt.Appendf(nil, "%d", i), LeaseDuration: time.Minute})
			}
			enqueue(t, q, jobs...)
			leased, err := q.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 4})
			if err != nil || len(leased) != 4 {
				t.Fatalf("leased %d: %v", len(leased), err)
			}
			if _, err := q.Complete(bg, "w", ref(leased[2]), []byte("first")); err != nil {
				t.Fatal(err)
			}
			stale := ref(leased[3])
			stale.Attempt++
			res := queue.CompleteBatch(bg, q, "w", []queue.Completion{
				{Ref: ref(leased[0]), Result: []byte("r0")},
				{Ref: ref(leased[1]), Result: []byte("r1")},
				{Ref: ref(leased[2]), Result: []byte("second")},
				{Ref: stale, Result: []byte("stale")},
				{Ref: ref(leased[0]), Result: []byte("again")},
				{Ref: ref(leased[1]), Result: make([]byte, 1<<20+1)},
			})
			if len(res) != 6 {
				t.Fatalf("%d results", len(res))
			}
			for i := range 2 {
				j, _ := q.Get(bg, leased[i].ID)
				if res[i].Err != nil || res[i].Duplicate || j.State != store.Succeeded || string(j.Result) != fmt.Sprintf("r%d", i) {
					t.Fatalf("completion %d: %+v, job %+v", i, res[i], j)
				}
			}
			if res[2].Err != nil || !res[2].Duplicate {
				t.Fatalf("repeat of an earlier completion: %+v", res[2])
			}
			if !errors.Is(res[3].Err, queue.ErrLeaseLost) {
				t.Fatalf("stale attempt: %+v", res[3])
			}
			if j, _ := q.Get(bg, leased[0].ID); res[4].Err != nil || !res[4].Duplicate || string(j.Result) != "r0" {
				t.Fatalf("the same lease twice in one batch: %+v, result %q", res[4], j.Result)
			}
			if !errors.Is(res[5].Err, queue.ErrInvalid) {
				t.Fatalf("oversized result: %+v", res[5])
			}
		})
	}
}

// Concurrent lease calls of one worker (slots sharing its name) share a
// statement, and its lease limit holds across them.
func TestLeaseCallsOfOneWorker(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	q := open(t, fast(srv.NewDB(t), queue.Options{MaxLeasesPerWorker: 5}))
	t.Cleanup(func() { _ = q.Close() })
	var jobs []queue.NewJob
	for range 30 {
		jobs = append(jobs, queue.NewJob{Queue: "default", LeaseDuration: time.Minute})
	}
	enqueue(t, q, jobs...)
	const calls = 20
	got := make(chan []store.Job, calls)
	for range calls {
		go func() {
			js, err := q.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1, Wait: 200 * time.Millisecond})
			if err != nil && !errors.Is(err, queue.ErrTooManyLeases) {
				t.Error(err)
			}
			got <- js
		}()
	}
	seen := map[string]bool{}
	for range calls {
		for _, j := range <-got {
			if seen[j.ID] {
				t.Fatalf("job %s leased twice", j.ID)
			}
			seen[j.ID] = true
		}
	}
	if len(seen) != 5 {
		t.Fatalf("one worker's concurrent calls leased %d jobs, its limit is 5", len(seen))
	}
}
