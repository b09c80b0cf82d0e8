package pgqueue_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/pgqueue"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

var bg = context.Background()

func ref(j store.Job) queue.Ref {
	return queue.Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
	}
}

func enqueue(t *testing.T, q queue.Backend, jobs ...queue.NewJob) []store.Job {
	t.Helper()
	res, err := q.Enqueue(bg, jobs)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]store.Job, len(res))
	for i, r := range res {
		out[i] = r.Job
	}
	return out
}

// Replicas starting together on an empty database migrate it once; a
// schema newer than the binary is refused by name.
func TestMigrate(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	var wg sync.WaitGroup
	applied := make([]int, 4)
	for i := range applied {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pool, _, err := pgqueue.Connect(bg, dsn, 2)
			if err != nil {
				t.Error(err)
				return
			}
			defer pool.Close()
			from, to, err := pgqueue.Migrate(bg, pool)
			if err != nil {
				t.Error(err)
				return
			}
			applied[i] = to - from
		}()
	}
	wg.Wait()
	total := 0
	for _, n := range applied {
		total += n
	}
	if total != pgqueue.SchemaVersion() {
		t.Fatalf("migrations applied %v times in all, want %d", applied, pgqueue.SchemaVersion())
	}
	q := open(t, fast(dsn, queue.Options{}))
	q.Close()

	srv.Exec(t, "test1", "INSERT INTO relay_schema_migrations (version) VALUES (999)")
	_, err := pgqueue.Open(bg, fast(dsn, queue.Options{}))
	if !errors.Is(err, pgqueue.ErrSchemaNewer) || !strings.Contains(err.Error(), "999") {
		t.Fatalf("open on a newer schema: %v", err)
	}
	o := fast(dsn, queue.Options{})
	o.NoMigrate = true
	if _, err := pgqueue.Open(bg, o); !errors.Is(err, pgqueue.ErrSchemaNewer) {
		t.Fatalf("open without migrating on a newer schema: %v", err)
	}
	fresh := fast(srv.NewDB(t), queue.Options{})
	fresh.NoMigrate = true
	if _, err := pgqueue.Open(bg, fresh); err == nil || !strings.Contains(err.Error(), "relay migrate") {
		t.Fatalf("open without migrating on an empty database: %v", err)
	}
}

// Bad DSNs, an unreachable database and a missing privilege each fail
// Open with an error that says what to fix, and never the password.
func TestOpenErrors(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	srv.NewDB(t)
	srv.Exec(t, "test1", "CREATE ROLE weak LOGIN PASSWORD 'pw-weak-1234'", "REVOKE CREATE ON SCHEMA public FROM PUBLIC")
	const secret = "s3cret-Passw0rd"
	for _, tc := range []struct {
		name, dsn string
		want      error
	}{
		{"unparsable", "postgres://relay:" + secret + "@host:notaport/db", pgqueue.ErrBadDSN},
		{"bad port", "host=/tmp port=notaport password=" + secret, pgqueue.ErrBadDSN},
		{"unreachable", "postgres://relay:" + secret + "@/db?host=/nonexistent-dir&connect_timeout=2", pgqueue.ErrUnreachable},
		{"permission", strings.Replace(srv.DSN("test1", "weak"), "weak@", "weak:pw-weak-1234@", 1), pgqueue.ErrPermission},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := pgqueue.Open(bg, fast(tc.dsn, queue.Options{}))
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "pw-weak-1234") {
				t.Fatalf("the error shows the password: %v", err)
			}
			t.Log(err)
		})
	}
	for _, dsn := range []string{
		"postgres://u:" + secret + "@h/db",
		"postgresql://u:" + secret + "@h:notaport/db",
		"postgres://u@h/db?password=" + secret,
		"host=h password=" + secret,
	} {
		if got := pgqueue.RedactDSN(dsn); strings.Contains(got, secret) || !strings.Contains(got, "REDACTED") {
			t.Errorf("RedactDSN(%q) = %q", dsn, got)
		}
	}
}

// Two replicas on one database: a job enqueued on one wakes a long poll
// on the other, a worker that moves replica keeps its lease, the same
// lease settled through both wins once, and either expires the other's
// overdue leases.
func TestReplicas(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	o := fast(dsn, queue.Options{Backoff: queue.Backoff{Base: time.Hour, Max: time.Hour}})
	o.PollInterval = 10 * time.Second // only NOTIFY can wake the poll in time
	a, b := open(t, o), open(t, o)
	defer a.Close()
	defer b.Close()

	got := make(chan []store.Job, 1)
	go func() {
		jobs, err := b.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1, Wait: 8 * time.Second})
		if err != nil {
			t.Error(err)
		}
		got <- jobs
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	j := enqueue(t, a, queue.NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	var l store.Job
	select {
	case jobs := <-got:
		if len(jobs) != 1 || jobs[0].ID != j.ID {
			t.Fatalf("long poll on b: %+v", jobs)
		}
		l = jobs[0]
		t.Logf("enqueue on a woke a long poll on b in %s", time.Since(start))
	case <-time.After(5 * time.Second):
		t.Fatal("a long poll on b was not woken by an enqueue on a")
	}
	// The worker moves to a: its lease is its own there too.
	st, err := a.Heartbeat("w", []queue.Ref{ref(l)}, true)
	if err != nil || st[0].State != proto.LeaseHeld {
		t.Fatalf("heartbeat on the other replica: %+v %v", st, err)
	}
	// Both replicas complete the same lease at once: one wins, the other
	// is a duplicate.
	var wg sync.WaitGroup
	dups := make([]bool, 2)
	for i, q := range []*pgqueue.Queue{a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dup, err := q.Complete(bg, "w", ref(l), []byte("r"))
			if err != nil {
				t.Error(err)
			}
			dups[i] = dup
		}()
	}
	wg.Wait()
	if dups[0] == dups[1] {
		t.Fatalf("duplicates %v: want exactly one first completion", dups)
	}

	// A lease taken on b and abandoned is expired (by either replica).
	j2 := enqueue(t, b, queue.NewJob{Queue: "default", LeaseDuration: time.Second})[0]
	l2, err := b.Lease(bg, queue.LeaseRequest{Worker: "w2", Queues: []string{"default"}, Max: 1})
	if err != nil || len(l2) != 1 {
		t.Fatalf("lease: %+v %v", l2, err)
	}
	b.Close()
	eventually(t, 5*time.Second, "a to expire b's lease", func() bool {
		got, err := a.Get(bg, j2.ID)
		return err == nil && got.State == store.Retrying && got.LeaseEnd == store.EndExpired
	})
	if _, err := b.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1}); !errors.Is(err, queue.ErrClosed) {
		t.Fatalf("lease on a closed replica: %v", err)
	}
}

// Expiry races on many replicas end each lease once.
func TestExpiryOnManyReplicasEndsEachLeaseOnce(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	o := fast(dsn, queue.Options{Backoff: queue.Backoff{Base: time.Hour, Max: time.Hour}})
	o.ExpiryInterval = time.Hour // expired by hand below
	qs := make([]*pgqueue.Queue, 3)
	for i := range qs {
		qs[i] = open(t, o)
		defer qs[i].Close()
	}
	const n = 200
	batch := make([]queue.NewJob, n)
	for i := range batch {
		batch[i] = queue.NewJob{Queue: "default", LeaseDuration: time.Second}
	}
	enqueue(t, qs[0], batch...)
	leased, err := qs[0].Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: n})
	if err != nil || len(leased) != n {
		t.Fatalf("leased %d: %v", len(leased), err)
	}
	time.Sleep(1100 * time.Millisecond)
	var wg sync.WaitGroup
	var mu sync.Mutex
	total := 0
	for _, q := range qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				k, err := q.Expire(bg)
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				total += k
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if total != n {
		t.Fatalf("%d expirations for %d leases", total, n)
	}
	jobs, _, err := qs[1].List(bg, store.Filter{State: store.Retrying, Limit: 1000})
	if err != nil || len(jobs) != n {
		t.Fatalf("%d retrying: %v", len(jobs), err)
	}
	for _, j := range jobs {
		if j.Attempt != 1 {
			t.Fatalf("job %s at attempt %d", j.ID, j.Attempt)
		}
	}
}

// While the database is down a replica is unready and refuses work as
// overloaded; once it is back, leases get a lease duration before they
// expire, so workers that could not heartbeat keep them.
func TestDatabaseRestart(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{Fsync: true})
	dsn := srv.NewDB(t)
	q := open(t, fast(dsn, queue.Options{Backoff: queue.Backoff{Base: time.Hour, Max: time.Hour}}))
	defer q.Close()
	j := enqueue(t, q, queue.NewJob{Queue: "default", LeaseDuration: 2 * time.Second})[0]
	ls, err := q.Lease(bg, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1})
	if err != nil || len(ls) != 1 {
		t.Fatalf("lease: %+v %v", ls, err)
	}
	srv.Stop(true)
	eventually(t, 5*time.Second, "the replica to notice", func() bool { return q.Ready() != nil })
	if !errors.Is(q.Ready(), queue.ErrOverloaded) {
		t.Fatalf("Ready while the database is down: %v", q.Ready())
	}
	if _, err := q.Heartbeat("w", []queue.Ref{ref(ls[0])}, false); !errors.Is(err, queue.ErrOverloaded) {
		t.Fatalf("heartbeat while the database is down: %v", err)
	}
	if _, err := q.Enqueue(bg, []queue.NewJob{{Queue: "default"}}); !errors.Is(err, queue.ErrOverloaded) {
		t.Fatalf("enqueue while the database is down: %v", err)
	}
	time.Sleep(2500 * time.Millisecond) // past the lease's deadline
	srv.Start()
	eventually(t, 10*time.Second, "the replica to be ready again", func() bool { return q.Ready() == nil })
	st, err := q.Heartbeat("w", []queue.Ref{ref(ls[0])}, false)
	if err != nil || st[0].State != proto.LeaseHeld {
		t.Fatalf("heartbeat after the outage: %+v %v", st, err)
	}
	// Without heartbeats it expires after the grace.
	eventually(t, 10*time.Second, "the lease to expire", func() bool {
		got, err := q.Get(bg, j.ID)
		return err == nil && got.State == store.Retrying
	})
}
