package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// LeaseRequest is one long poll.
type LeaseRequest struct {
	// Worker is who leases: leases belong to the name, not a connection.
	Worker string
	// Queues to lease from (at least one).
	Queues []string
	// Max is how many jobs the worker can take (at least 1).
	Max int
	// MaxBytes, if set, bounds the payload bytes of one answer; the first
	// job is given whatever its size.
	MaxBytes int
	// Wait is how long to wait for a job when none is ready (capped at
	// Options.MaxWait); zero answers at once.
	Wait time.Duration
}

// waiter is one Lease call: parked in q.waiters while it waits.
type waiter struct {
	worker   string
	queues   []string
	max      int
	maxBytes int
	bytes    int

	jobs     []store.Job // their records, without payloads until Lease reads them
	commit   *store.Commit
	servedAt time.Time
	done     chan struct{} // closed when served while parked
	parked   bool
}

// Lease leases up to r.Max ready jobs, waiting up to r.Wait for one. The
// leases are durable when it returns. It returns no jobs and no error when
// the wait ends empty, and ctx's error if ctx ended first.
func (q *Queue) Lease(ctx context.Context, r LeaseRequest) ([]store.Job, error) {
	if err := CheckLeaseRequest(&r, q.opts.MaxWait); err != nil {
		return nil, err
	}
	start := time.Now()

	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("leasing: %w", err)
	}
	held := 0
	if wi, ok := q.names.lookup(r.Worker); ok {
		held = len(q.held[wi])
	}
	room := q.opts.MaxLeasesPerWorker - held
	if room <= 0 {
		q.mu.Unlock()
		return nil, fmt.Errorf("leasing: %w: %s holds %d leases, the most allowed; settle some first", ErrTooManyLeases, r.Worker, held)
	}
	w := &waiter{
		worker:   r.Worker,
		queues:   slices.Compact(slices.Sorted(slices.Values(r.Queues))),
		max:      min(r.Max, room),
		maxBytes: r.MaxBytes,
		done:     make(chan struct{}),
	}
	q.serve(w, start)
	if w.commit == nil && r.Wait > 0 {
		w.parked = true
		q.waiters = append(q.waiters, w)
		q.m.waiters.Inc()
		q.mu.Unlock()
		t := time.NewTimer(r.Wait)
		select {
		case <-w.done:
		case <-t.C:
		case <-ctx.Done():
		case <-q.closing:
		}
		t.Stop()
		q.mu.Lock()
		if w.commit == nil {
			q.unpark(w)
		}
	}
	jobs, c, servedAt := w.jobs, w.commit, w.servedAt
	q.mu.Unlock()
	if c == nil {
		return nil, ctx.Err()
	}
	if err := wait(c, "leasing"); err != nil {
		return nil, err
	}
	jobs, err := q.payloads(ctx, r.Worker, jobs)
	if err != nil {
		return nil, err
	}
	q.m.leaseLatency.Observe(time.Since(servedAt).Seconds())
	return jobs, nil
}

// payloads reads the payloads (and creation times) of leased jobs from the store, once their
// leases are durable (a job's body is written before any lease of it).
// A job whose record is gone meanwhile (it can only have been finished
// and deleted) is left out of the answer.
func (q *Queue) payloads(ctx context.Context, worker string, jobs []store.Job) ([]store.Job, error) {
	ids := make([]string, len(jobs))
	for i := range jobs {
		ids[i] = jobs[i].ID
	}
	bodies, found, err := q.st.Bodies(ctx, ids)
	if err != nil {
		refs := make([]Ref, len(jobs))
		for i, j := range jobs {
			refs[i] = Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}
		}
		q.Unlease(worker, refs)
		return nil, fmt.Errorf("leasing: %w", err)
	}
	out := jobs[:0]
	for i := range jobs {
		if found[i] {
			jobs[i].Payload, jobs[i].CreatedAt, jobs[i].IdempotencyKey = bodies[i].Payload, bodies[i].CreatedAt, bodies[i].IdempotencyKey
			out = append(out, jobs[i])
		}
	}
	return out, nil
}

// checkLease checks a Lease call's fields.
func checkLease(r *LeaseRequest) error {
	if err := proto.CheckName("worker", r.Worker); err != nil {
		return invalid("worker", "%v", err)
	}
	if len(r.Queues) == 0 {
		return invalid("queues", "empty; name at least one queue")
	}
	for i, name := range r.Queues {
		if err := proto.CheckName("queue", name); err != nil {
			return invalid(fmt.Sprintf("queues[%d]", i), "%v", err)
		}
	}
	if r.Max < 1 {
		return invalid("max_jobs", "%d; want at least 1", r.Max)
	}
	return nil
}

// unpark takes w out of the waiters.
func (q *Queue) unpark(w *waiter) {
	if !w.parked {
		return
	}
	w.parked = false
	q.m.waiters.Dec()
	if i := slices.Index(q.waiters, w); i >= 0 {
		q.waiters = slices.Delete(q.waiters, i, i+1)
	}
}

// serve leases to w as many ready jobs of its queues as it can take,
// oldest first, and hands their records to the store.
func (q *Queue) serve(w *waiter, now time.Time) {
	var leased []*entry
	for len(w.jobs) < w.max {
		e := q.oldestReady(w.queues)
		if e == nil {
			break
		}
		if w.maxBytes > 0 && len(w.jobs) > 0 && w.bytes+int(e.size) > w.maxBytes {
			break
		}
		q.removeReady(e)
		q.lease(e, w.worker, now)
		w.jobs = append(w.jobs, q.jobOf(e, now))
		w.bytes += int(e.size)
		leased = append(leased, e)
	}
	if len(leased) == 0 {
		return
	}
	w.commit = q.write(slices.Clone(w.jobs[len(w.jobs)-len(leased):]), leased)
	w.servedAt = now
	if w.parked {
		q.unpark(w)
		close(w.done)
	}
}

// dispatch serves parked long polls, oldest first, while jobs are ready.
func (q *Queue) dispatch(now time.Time) {
	for i := 0; i < len(q.waiters) && q.nready > 0; {
		w := q.waiters[i]
		q.serve(w, now)
		if w.commit == nil {
			i++ // nothing for its queues; serve removed it otherwise
		}
	}
}

// oldestReady is the next job to lease among queues, paused ones left
// out.
func (q *Queue) oldestReady(queues []string) *entry {
	var best *entry
	for _, name := range queues {
		if q.paused[name] {
			continue
		}
		qi, ok := q.names.lookup(name)
		if !ok {
			continue
		}
		h := q.ready[qi]
		if h == nil || h.Len() == 0 {
			continue
		}
		if e := h.top(); best == nil || before(e, best) {
			best = e
		}
	}
	return best
}

// lease gives e to worker: a new attempt, token and deadline.
func (q *Queue) lease(e *entry, worker string, now time.Time) {
	name := q.names.name(e.queue)
	q.m.jobWait.Observe(now.Sub(timeOf(e.runAfter)).Seconds())
	q.setState(e, store.Leased)
	e.attempt++
	e.token = newToken()
	e.worker = q.names.intern(worker)
	e.leasedAt = now.UnixNano()
	e.deadline = now.Add(e.leaseDur).UnixNano()
	e.end = 0
	q.hold(e)
	q.pushTimer(e, e.deadline)
	q.m.leases.WithLabelValues(name).Inc()
	if e.attempt > 1 {
		q.m.redeliveries.WithLabelValues(name).Inc()
	}
}

// holds reports whether ref names e's current lease, held by worker.
func (q *Queue) holds(e *entry, worker string, ref Ref) bool {
	return e.State() == store.Leased && q.sameLease(e, worker, ref)
}

// sameLease reports whether ref names e's current or last lease, by
// worker.
func (q *Queue) sameLease(e *entry, worker string, ref Ref) bool {
	return e.attempt == ref.Attempt && q.names.name(e.worker) == worker && sameLeaseToken(e, ref)
}

// Unlease undoes leases whose Lease answer could not be sent: the jobs are
// ready again at once and the attempt is not counted.
func (q *Queue) Unlease(worker string, refs []Ref) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	now := time.Now()
	var undone []*entry
	for _, ref := range refs {
		e := q.find(ref.JobID)
		if e == nil || !q.holds(e, worker, ref) {
			continue
		}
		q.unhold(e)
		q.setState(e, store.Queued)
		e.attempt--
		e.token = [16]byte{}
		e.worker = 0
		e.leasedAt, e.deadline = 0, 0
		e.runAfter = now.UnixNano()
		q.makeReady(e)
		undone = append(undone, e)
	}
	if len(undone) > 0 {
		q.writeAll(undone, now)
		q.log.Info("leases undone: the answer could not be sent", "worker", worker, "jobs", len(undone))
		q.dispatch(now)
	}
}
