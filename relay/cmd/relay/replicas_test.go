package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/client"
)

// pgSetup is a PostgreSQL database and the flags that point relay at it
// (the DSN in a 0600 file, never on the command line).
func pgSetup(t *testing.T, s *setup, fsync bool) (*pgtest.Server, []string) {
	t.Helper()
	srv := pgtest.Start(t, pgtest.Options{Fsync: fsync})
	file := filepath.Join(s.dir, "store.dsn")
	if err := os.WriteFile(file, []byte(srv.NewDB(t)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return srv, []string{"--store-file", file, "--lease-duration", "2s"}
}

// replicaSet is the relay replicas running now, for workers to move
// between.
type replicaSet struct {
	mu    sync.Mutex
	procs []*proc
}

func (r *replicaSet) get(i int) *proc {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.procs[i%len(r.procs)]
}

func (r *replicaSet) set(i int, p *proc) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.procs[i] = p
}

// completions records, per job, the attempts whose completion relay
// accepted (a repeat after a lost answer reads as a duplicate of the same
// attempt): exactly once means one attempt.
type completions struct {
	mu    sync.Mutex
	n     map[string]map[uint32]bool
	res   map[string]string
	at    []time.Time         // when each completion was acknowledged
	on    map[int]int         // worker → the replica it works on
	moves map[int][]time.Time // worker → when it had a new connection after losing one
}

func (c *completions) done(id string, attempt uint32, res string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[id] == nil {
		c.n[id] = map[uint32]bool{}
	}
	c.n[id][attempt] = true
	c.res[id] = res
	c.at = append(c.at, time.Now())
}

// roam works on replica start, and when the connection or a call fails
// moves to the next replica, keeping its leases: it heartbeats and
// completes them there.
func roam(ctx context.Context, s *setup, rs *replicaSet, worker, start int, c *completions) {
	var held []client.Job
	lost := false
	for i := start; ctx.Err() == nil; i++ {
		p := rs.get(i)
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		cl, err := p.dial(dctx, s, s.bunny)
		cancel()
		if err != nil {
			time.Sleep(50 * time.Millisecond)
			continue
		}
		c.mu.Lock()
		c.on[worker] = i % len(rs.procs)
		if lost {
			c.moves[worker] = append(c.moves[worker], time.Now())
		}
		c.mu.Unlock()
		held = workOn(ctx, cl, held, c)
		cl.Close()
		lost = true
	}
}

// overloaded waits as relay asked when err is OVERLOADED (a replica
// without its database says so), and reports whether it was.
func overloaded(ctx context.Context, err error) bool {
	if !errors.Is(err, client.ErrOverloaded) {
		return false
	}
	t := time.NewTimer(min(max(client.RetryAfter(err), 50*time.Millisecond), 200*time.Millisecond))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
	return true
}

// callTimeout bounds each call beyond its long poll, as bunny's does: a
// call to a replica that died is abandoned, and the next request reaches
// the replica restarted at its address, which answers with a stateless
// reset (keep-alive PINGs are too small to draw one).
const callTimeout = 2 * time.Second

// timedOut reports whether err is a call's own deadline.
func timedOut(ctx context.Context, err error) bool {
	return errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil
}

// workOn leases and completes on one connection until the connection
// fails, and returns the leases still held then.
func workOn(ctx context.Context, cl *client.Client, held []client.Job, c *completions) []client.Job {
	call := func() (context.Context, context.CancelFunc) { return context.WithTimeout(ctx, callTimeout) }
	for ctx.Err() == nil {
		if len(held) == 0 {
			cctx, cancel := call()
			jobs, err := cl.Lease(cctx, client.LeaseOptions{Max: 16, Wait: 500 * time.Millisecond})
			cancel()
			if overloaded(ctx, err) || timedOut(ctx, err) {
				continue
			}
			if err != nil {
				return held
			}
			held = jobs
			continue
		}
		// Leases carried over from another replica are still this
		// worker's: a heartbeat here keeps them.
		leases := make([]client.Lease, len(held))
		for i, j := range held {
			leases[i] = j.Lease
		}
		cctx, cancel := call()
		_, err := cl.Heartbeat(cctx, leases, false)
		cancel()
		if overloaded(ctx, err) || timedOut(ctx, err) {
			continue
		} else if err != nil {
			return held
		}
		for len(held) > 0 {
			j := held[0]
			res := "done:" + string(j.Payload)
			// A duplicate is this lease's earlier completion, whose
			// answer was lost with the replica.
			cctx, cancel := call()
			_, err := cl.Complete(cctx, j.Lease, []byte(res))
			cancel()
			switch {
			case errors.Is(err, client.ErrLeaseLost):
			case overloaded(ctx, err), timedOut(ctx, err):
				continue
			case err != nil:
				return held
			default:
				c.done(j.ID, j.Lease.Attempt, res)
			}
			held = held[1:]
		}
	}
	return held
}

type replicaTest struct {
	jobs      int
	faults    bool
	producers int
	// spread paces the enqueues over this long, so that jobs flow
	// through every fault.
	spread time.Duration
}

// Three relay replicas on one PostgreSQL, two workers: every job completes
// exactly once with its result, whichever replica took the enqueue, the
// lease and the completion.
func TestReplicasOnPostgres(t *testing.T) {
	runReplicas(t, replicaTest{jobs: 1500, producers: 2})
}

// The same while each replica in turn is SIGKILLed and restarted and
// PostgreSQL itself restarts as after a crash: no acknowledged enqueue or
// result is lost, and every job still succeeds exactly once.
func TestReplicaFaults(t *testing.T) {
	n := 10_000
	if testing.Short() {
		n = 2000
	}
	runReplicas(t, replicaTest{jobs: n, faults: true, producers: 2, spread: 10 * time.Second})
}

func runReplicas(t *testing.T, rt replicaTest) {
	s := newSetup(t)
	srv, storeArgs := pgSetup(t, s, rt.faults)
	const replicas = 3
	rs := &replicaSet{procs: make([]*proc, replicas)}
	var wg sync.WaitGroup
	for i := range replicas {
		wg.Add(1)
		go func() { defer wg.Done(); rs.set(i, startRelay(t, s, storeArgs...)) }()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	// Producers enqueue through every replica's API, retrying a refused
	// call; what is acknowledged is recorded.
	l := &ledger{jobs: map[string]string{}, results: map[string]string{}}
	per := rt.jobs / rt.producers
	pace := rt.spread / time.Duration(max(per/10, 1))
	var pwg sync.WaitGroup
	for p := range rt.producers {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			for i := 0; i < per && ctx.Err() == nil; {
				n := min(10, per-i)
				reqs := make([]api.JobRequest, n)
				for k := range reqs {
					reqs[k] = api.JobRequest{Queue: "default", PayloadText: fmt.Sprintf("p%d-%d", p, i+k), IdempotencyKey: fmt.Sprintf("p%d-%d", p, i+k)}
				}
				jobs, err := rs.get(p+i/n).api(s).EnqueueBatch(ctx, reqs)
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue // idempotency keys make the retry safe
				}
				for k, j := range jobs {
					l.job(j.ID, reqs[k].PayloadText)
				}
				i += n
				time.Sleep(pace)
			}
		}()
	}
	c := &completions{n: map[string]map[uint32]bool{}, res: map[string]string{}, on: map[int]int{}, moves: map[int][]time.Time{}}
	var wwg sync.WaitGroup
	for w := range 2 {
		wwg.Add(1)
		go func() { defer wwg.Done(); roam(ctx, s, rs, w, w+1, c) }()
	}

	type kill struct {
		at      time.Time
		replica int
		workers []int // on the replica when it was killed
	}
	var kills []kill
	var dbStart, dbEnd time.Time
	if rt.faults {
		// Each replica in turn is killed and started again; then the
		// database restarts as after a crash.
		for i := range replicas {
			time.Sleep(1500 * time.Millisecond)
			k := kill{at: time.Now(), replica: i}
			c.mu.Lock()
			for w, r := range c.on {
				if r == i {
					k.workers = append(k.workers, w)
				}
			}
			c.mu.Unlock()
			kills = append(kills, k)
			// It comes back on the same address, as a pod behind a
			// service would: it answers the dead connections' packets
			// with stateless resets (the key is derived from the
			// identity the replicas share), so workers move at once.
			old := rs.get(i)
			old.kill()
			rs.set(i, startRelay(t, s, append(slices.Clone(storeArgs), "--listen", old.quic)...))
			t.Logf("replica %d killed with SIGKILL and restarted", i)
		}
		time.Sleep(time.Second)
		dbStart = time.Now()
		srv.Restart(true)
		dbEnd = time.Now()
		t.Logf("PostgreSQL restarted (pg_ctl restart -m immediate) in %s", dbEnd.Sub(dbStart).Round(time.Millisecond))
	}

	pwg.Wait()
	deadline := time.Now().Add(120 * time.Second)
	for {
		l.mu.Lock()
		want := len(l.jobs)
		l.mu.Unlock()
		if want == rt.jobs && progress(c) >= want {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acknowledged jobs completed after 2 minutes", progress(c), want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cancel()
	wwg.Wait()

	ac := rs.get(0).api(s)
	l.mu.Lock()
	defer l.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for id, payload := range l.jobs {
		if n := len(c.n[id]); n != 1 {
			t.Fatalf("job %s completed by %d attempts", id, n)
		}
		j, err := ac.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("acknowledged job %s: %v", id, err)
		}
		if j.State != "succeeded" || string(j.Result) != "done:"+payload || string(j.Result) != c.res[id] {
			t.Fatalf("job %s: %s with result %q, want %q", id, j.State, j.Result, "done:"+payload)
		}
	}
	if len(c.n) != len(l.jobs) {
		t.Fatalf("%d jobs completed, %d enqueued", len(c.n), len(l.jobs))
	}
	t.Logf("%d jobs over %d replicas: each succeeded exactly once with its result", len(l.jobs), replicas)
	for _, k := range kills {
		if len(k.workers) == 0 {
			t.Logf("kill of replica %d: no worker was on it", k.replica)
		}
		for _, w := range k.workers {
			// The worker's first new connection after the kill.
			ms := c.moves[w]
			j, _ := slices.BinarySearchFunc(ms, k.at, func(a, b time.Time) int { return a.Compare(b) })
			if j < len(ms) {
				t.Logf("kill of replica %d: worker %d was connected to another replica %s later", k.replica, w, ms[j].Sub(k.at).Round(time.Millisecond))
			} else {
				t.Errorf("kill of replica %d: worker %d never reconnected", k.replica, w)
			}
		}
	}
	if !dbStart.IsZero() {
		t.Logf("database restart: the longest pause between completions around it was %s", longestGap(c.at, dbStart, dbEnd).Round(time.Millisecond))
	}
}

// longestGap is the longest time between consecutive times in at that
// overlaps [from, to].
func longestGap(at []time.Time, from, to time.Time) time.Duration {
	at = slices.SortedFunc(slices.Values(at), func(a, b time.Time) int { return a.Compare(b) })
	var gap time.Duration
	for i := 1; i < len(at); i++ {
		if at[i].Before(from) || at[i-1].After(to) {
			continue
		}
		gap = max(gap, at[i].Sub(at[i-1]))
	}
	return gap
}

func progress(c *completions) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.n)
}
