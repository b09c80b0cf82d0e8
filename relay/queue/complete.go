package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Complete settles worker's lease ref with a result, and returns once the
// result is durable. It is idempotent: repeating it with the same lease
// returns duplicate and keeps the first result. A lease that expired may
// still complete the job while no newer attempt has started; after that
// it gets ErrLeaseLost.
func (q *Queue) Complete(ctx context.Context, worker string, ref Ref, result []byte) (duplicate bool, err error) {
	if err := CheckResult(result, q.opts.MaxResult); err != nil {
		return false, err
	}
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return false, fmt.Errorf("completing job %s: %w", ref.JobID, err)
	}
	e, _, err := q.lookup(ctx, ref.JobID)
	if err != nil {
		q.mu.Unlock()
		return false, fmt.Errorf("completing job %s: %w", ref.JobID, err)
	}
	late := false
	st := e.State()
	switch {
	case q.holds(e, worker, ref):
	case q.sameLease(e, worker, ref) && st == store.Succeeded && e.LeaseEnd() == store.EndCompleted:
		q.mu.Unlock()
		return true, nil
	case q.sameLease(e, worker, ref) && (st == store.Retrying || st == store.Dead) &&
		(e.LeaseEnd() == store.EndExpired || e.LeaseEnd() == store.EndReleased):
		// No newer attempt has started: the first valid result wins.
		late = true
	default:
		reason := q.lossReason(e, ref)
		q.m.fenced.WithLabelValues("complete").Inc()
		q.mu.Unlock()
		return false, fmt.Errorf("completing job %s attempt %d: %w: %s", ref.JobID, ref.Attempt, ErrLeaseLost, reason)
	}
	now := time.Now()
	if e.slot == noSlot {
		// A dead job read from the store: it counts as live while it
		// finishes, so that the counts stay right.
		e = q.adopt(e)
	}
	q.unhold(e)
	e.end = leaseEndCode(store.EndCompleted)
	q.setState(e, store.Succeeded)
	q.finish(e)
	q.m.completions.WithLabelValues(q.names.name(e.queue)).Inc()
	if late {
		q.log.Info("late result accepted: no newer attempt had started", "job", ref.JobID, "attempt", ref.Attempt, "worker", worker)
	}
	rec := q.jobOf(e, now)
	rec.Result = result
	c := q.write1(rec, e)
	q.mu.Unlock()
	return false, wait(c, "completing job "+ref.JobID)
}
