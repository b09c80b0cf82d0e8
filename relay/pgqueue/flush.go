package pgqueue

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// A replica's completions and lease calls wait in one pending set, which
// its flusher drains: it takes what is waiting (up to completeBatch
// completions and, per queue set, one lease statement's calls) and sends
// it as one pipelined batch, which PostgreSQL runs as one implicit
// transaction: one round trip and one commit for all of it. Nobody is
// answered before that commit. A lone call goes out at once; under load,
// calls that arrive while a round runs share the next one.
//
// One flusher per replica, one round at a time: the callers a round
// answers come back together, and one round then carries them all. With
// two, the second started a round with the first few to return and split
// them (three replicas on one database, 64 single-job workers: 0.34
// commits per job with two, 0.15 with one and the gather below).
const (
	completeBatch = 256
	// groupRequests bounds the lease calls one statement serves. Calls of
	// one worker (slots sharing a name) are one request of the statement
	// for their total, so the worker's lease limit holds.
	groupRequests = 256
	// gatherMax is how long a round waits for as many calls as the last
	// one had, when that was more than one: the callers it answered are
	// usually on their way back. A lone caller never waits.
	gatherMax = time.Millisecond
)

// roundSettingsSQL starts every round. The statements of a round are
// prepared once per connection, and PostgreSQL's default plans the lease
// statement afresh at every call (its custom plan looks cheaper than the
// generic one), which was a third of the database's time with three
// replicas; so a round uses generic plans. A generic plan is made once and
// kept, so it must not depend on how big the table was then: with
// sequential scans off it takes the indexes even when it is made while the
// table is nearly empty (otherwise a completion plan made then scanned the
// whole table at every call once the table had grown). Both settings last
// only to the round's commit (set_config's is_local), so they hold
// through transaction poolers and touch no other statement.
const roundSettingsSQL = `SELECT set_config('plan_cache_mode', 'force_generic_plan', true), set_config('enable_seqscan', 'off', true)`

// completion is one Complete waiting for a batch.
type completion struct {
	worker string
	ref    queue.Ref
	result []byte
	won    chan error // nil: this call's UPDATE took; else the error
}

// leaseCall is one Lease waiting for a batch.
type leaseCall struct {
	worker string
	n      int
	done   chan leaseOutcome
}

type leaseOutcome struct {
	jobs []store.Job
	err  error
}

// pending is what waits for the next batch, grouped with its lock.
type pending struct {
	mu     sync.Mutex
	closed bool
	comps  []*completion
	leases map[string]*leaseSet // by queue set
	kick   chan struct{}        // a flusher should look
}

// leaseSet is the lease calls waiting for one queue set.
type leaseSet struct {
	queues []string
	calls  []*leaseCall
}

// round is one batch's work.
type round struct {
	comps  []*completion
	leases []leaseSet
}

func newPending() *pending {
	return &pending{leases: map[string]*leaseSet{}, kick: make(chan struct{}, 1)}
}

func (p *pending) signal() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// addCompletions queues cs for the next batch.
func (p *pending) addCompletions(cs ...*completion) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return queue.ErrClosed
	}
	p.comps = append(p.comps, cs...)
	p.signal()
	return nil
}

// addLease queues c for the next lease statement of queues.
func (p *pending) addLease(queues []string, c *leaseCall) error {
	key := strings.Join(queues, "\x00")
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return queue.ErrClosed
	}
	s := p.leases[key]
	if s == nil {
		s = &leaseSet{queues: queues}
		p.leases[key] = s
	}
	s.calls = append(s.calls, c)
	p.signal()
	return nil
}

// take splits off the next round; it is empty when nothing waits. What
// is left over kicks another flusher.
func (p *pending) take() round {
	p.mu.Lock()
	defer p.mu.Unlock()
	var r round
	n := min(len(p.comps), completeBatch)
	r.comps = p.comps[:n:n]
	p.comps = p.comps[n:]
	left := len(p.comps) > 0
	for key, s := range p.leases {
		batch, rest := takeBatch(s.calls)
		r.leases = append(r.leases, leaseSet{queues: s.queues, calls: batch})
		if len(rest) == 0 {
			delete(p.leases, key)
		} else {
			s.calls, left = rest, true
		}
	}
	if left {
		p.signal()
	}
	return r
}

// calls is how many calls r answers.
func (r round) calls() int {
	n := len(r.comps)
	for _, s := range r.leases {
		n += len(s.calls)
	}
	return n
}

// waiting is how many calls wait; p.mu held.
func (p *pending) waiting() int {
	n := len(p.comps)
	for _, s := range p.leases {
		n += len(s.calls)
	}
	return n
}

// gather waits up to max, or ctx's end, for want calls to be waiting.
func (p *pending) gather(ctx context.Context, want int, max time.Duration) {
	t := time.NewTimer(max)
	defer t.Stop()
	for {
		p.mu.Lock()
		n := p.waiting()
		p.mu.Unlock()
		if n >= want {
			return
		}
		select {
		case <-p.kick:
		case <-t.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// close answers everything waiting with err; later adds fail.
func (p *pending) close(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	for _, c := range p.comps {
		c.won <- err
	}
	p.comps = nil
	for key, s := range p.leases {
		for _, c := range s.calls {
			c.done <- leaseOutcome{err: err}
		}
		delete(p.leases, key)
	}
}

// takeBatch splits off the next statement's calls: the first
// groupRequests, in order.
func takeBatch(waiting []*leaseCall) (batch, rest []*leaseCall) {
	n := min(len(waiting), groupRequests)
	return waiting[:n:n], waiting[n:]
}

// leaseArgs are groupLeaseSQL's per-worker arguments for calls: each
// worker once, in the order of its first call, wanting its calls' total.
func leaseArgs(calls []*leaseCall) (workers []string, ns []int32) {
	at := map[string]int{}
	for _, c := range calls {
		i, ok := at[c.worker]
		if !ok {
			i = len(workers)
			at[c.worker] = i
			workers, ns = append(workers, c.worker), append(ns, 0)
		}
		ns[i] += int32(c.n)
	}
	return workers, ns
}

// dealLeased hands each call its share of its worker's jobs, oldest to the
// earliest call.
func dealLeased(calls []*leaseCall, jobs []store.Job) {
	byWorker := map[string][]store.Job{}
	for _, j := range jobs {
		byWorker[j.LeasedBy] = append(byWorker[j.LeasedBy], j)
	}
	for _, js := range byWorker {
		slices.SortFunc(js, byAge)
	}
	for _, c := range calls {
		js := byWorker[c.worker]
		n := min(c.n, len(js))
		c.done <- leaseOutcome{jobs: js[:n:n]}
		byWorker[c.worker] = js[n:]
	}
}

// flusher runs rounds until Close.
func (q *Queue) flusher() {
	for {
		select {
		case <-q.ctx.Done():
			q.pend.close(fmt.Errorf("settling and leasing: %w", queue.ErrClosed))
			return
		case <-q.pend.kick:
		}
		last := 0 // calls the last round answered
		for q.ctx.Err() == nil {
			if last > 1 {
				q.pend.gather(q.ctx, last, gatherMax)
			}
			r := q.pend.take()
			if last = r.calls(); last == 0 {
				break
			}
			q.flush(r)
		}
	}
}

// flush runs one round as one pipelined batch and answers its calls once
// the batch has committed.
func (q *Queue) flush(r round) {
	ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(roundSettingsSQL)
	var first, again []*completion // again: a second completion of a job in this round
	if len(r.comps) > 0 {
		var args []any
		args, first, again = completeArgs(r.comps)
		b.Queue(completeSQL, args...)
	}
	var lockWorkers []string
	for _, s := range r.leases {
		workers, _ := leaseArgs(s.calls)
		lockWorkers = append(lockWorkers, workers...)
	}
	if len(lockWorkers) > 0 {
		b.Queue(lockWorkersSQL, lockWorkers)
	}
	for _, s := range r.leases {
		workers, ns := leaseArgs(s.calls)
		b.Queue(groupLeaseSQL, s.queues, workers, ns, q.opts.Queue.MaxLeasesPerWorker)
	}
	br := q.pool.SendBatch(ctx, b)
	var won map[string]bool
	_, err := br.Exec()
	if err == nil && len(r.comps) > 0 {
		won, err = q.readCompleted(br)
	}
	if err == nil && len(lockWorkers) > 0 {
		_, err = br.Exec()
	}
	leased := make([][]store.Job, len(r.leases))
	for i := range r.leases {
		if err != nil {
			break
		}
		var rows pgx.Rows
		if rows, err = br.Query(); err == nil {
			leased[i], err = scanJobs(rows)
		}
	}
	if cerr := br.Close(); err == nil {
		err = cerr // the commit
	}
	for _, c := range first {
		switch {
		case err != nil:
			c.won <- q.dbErr(ctx, "completing jobs", err)
		case won[c.ref.JobID]:
			c.won <- nil
		default:
			c.won <- errNotUpdated
		}
	}
	for _, c := range again {
		c.won <- errNotUpdated
	}
	for i, s := range r.leases {
		if err != nil {
			lerr := q.dbErr(ctx, "leasing", err)
			for _, c := range s.calls {
				c.done <- leaseOutcome{err: lerr}
			}
			continue
		}
		dealLeased(s.calls, leased[i])
	}
}

// completeArgs are completeSQL's arguments for cs, one row per job:
// first holds the completions in the statement, again the repeats.
func completeArgs(cs []*completion) (args []any, first, again []*completion) {
	var (
		ids, workers    []string
		attempts        []int32
		tokens, results [][]byte
	)
	seen := map[string]bool{}
	for _, c := range cs {
		if seen[c.ref.JobID] {
			again = append(again, c)
			continue
		}
		seen[c.ref.JobID] = true
		t := c.ref.Token
		if t == nil {
			t = []byte{}
		}
		ids, attempts, tokens = append(ids, c.ref.JobID), append(attempts, int32(c.ref.Attempt)), append(tokens, t)
		workers, results = append(workers, c.worker), append(results, c.result)
		first = append(first, c)
	}
	return []any{ids, attempts, tokens, workers, results}, first, again
}

// readCompleted reads completeSQL's answer: the jobs it completed.
func (q *Queue) readCompleted(br pgx.BatchResults) (map[string]bool, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	won := map[string]bool{}
	for rows.Next() {
		var id string
		var late bool
		if err := rows.Scan(&id, &late); err != nil {
			return nil, err
		}
		won[id] = true
		if late {
			q.log.Info("late result accepted: no newer attempt had started", "job", id)
		}
	}
	return won, rows.Err()
}

// byAge orders jobs oldest first: by run_after, then id.
func byAge(a, b store.Job) int {
	if c := a.RunAfter.Compare(b.RunAfter); c != 0 {
		return c
	}
	return strings.Compare(a.ID, b.ID)
}
