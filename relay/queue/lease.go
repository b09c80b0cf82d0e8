package queue

import (
	"bytes"
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

	jobs     []store.Job
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
	held := len(q.held[r.Worker])
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
	q.m.leaseLatency.Observe(time.Since(servedAt).Seconds())
	return jobs, nil
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
		if w.maxBytes > 0 && len(w.jobs) > 0 && w.bytes+len(e.job.Payload) > w.maxBytes {
			break
		}
		q.removeReady(e)
		q.lease(e, w.worker, now)
		w.jobs = append(w.jobs, e.job)
		w.bytes += len(e.job.Payload)
		leased = append(leased, e)
	}
	if len(leased) == 0 {
		return
	}
	w.commit = q.write(leased...)
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
		h := q.ready[name]
		if h == nil || h.Len() == 0 {
			continue
		}
		if e := (*h)[0]; best == nil || before(e, best) {
			best = e
		}
	}
	return best
}

// lease gives e to worker: a new attempt, token and deadline.
func (q *Queue) lease(e *entry, worker string, now time.Time) {
	j := &e.job
	q.m.jobWait.Observe(now.Sub(j.RunAfter).Seconds())
	q.setState(e, store.Leased, now)
	j.Attempt++
	j.LeaseToken = newToken()
	j.LeasedBy = worker
	j.LeasedAt = now
	j.LeaseDeadline = now.Add(j.LeaseDuration)
	j.LeaseEnd = ""
	q.holdings(worker)[j.ID] = e
	q.pushTimer(e, j.LeaseDeadline)
	q.m.leases.WithLabelValues(j.Queue).Inc()
	if j.Attempt > 1 {
		q.m.redeliveries.WithLabelValues(j.Queue).Inc()
	}
}

// holds reports whether ref names e's current lease, held by worker.
func holds(e *entry, worker string, ref Ref) bool {
	return e.job.State == store.Leased && sameLease(e, worker, ref)
}

// sameLease reports whether ref names e's current or last lease, by
// worker.
func sameLease(e *entry, worker string, ref Ref) bool {
	return e.job.Attempt == ref.Attempt && e.job.LeasedBy == worker && len(ref.Token) > 0 && bytes.Equal(e.job.LeaseToken, ref.Token)
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
		e := q.jobs[ref.JobID]
		if e == nil || !holds(e, worker, ref) {
			continue
		}
		q.unhold(e)
		q.setState(e, store.Queued, now)
		e.job.Attempt--
		e.job.LeaseToken = nil
		e.job.LeasedBy = ""
		e.job.LeasedAt = time.Time{}
		e.job.LeaseDeadline = time.Time{}
		e.job.RunAfter = now
		q.makeReady(e)
		undone = append(undone, e)
	}
	if len(undone) > 0 {
		q.write(undone...)
		q.log.Info("leases undone: the answer could not be sent", "worker", worker, "jobs", len(undone))
		q.dispatch(now)
	}
}
