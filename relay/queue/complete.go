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
	e, err := q.lookup(ctx, ref.JobID)
	if err != nil {
		q.mu.Unlock()
		return false, fmt.Errorf("completing job %s: %w", ref.JobID, err)
	}
	late := false
	switch {
	case holds(e, worker, ref):
	case sameLease(e, worker, ref) && e.job.State == store.Succeeded && e.job.LeaseEnd == store.EndCompleted:
		q.mu.Unlock()
		return true, nil
	case sameLease(e, worker, ref) && (e.job.State == store.Retrying || e.job.State == store.Dead) &&
		(e.job.LeaseEnd == store.EndExpired || e.job.LeaseEnd == store.EndReleased):
		// No newer attempt has started: the first valid result wins.
		late = true
	default:
		reason := lossReason(e, ref)
		q.m.fenced.WithLabelValues("complete").Inc()
		q.mu.Unlock()
		return false, fmt.Errorf("completing job %s attempt %d: %w: %s", ref.JobID, ref.Attempt, ErrLeaseLost, reason)
	}
	now := time.Now()
	q.adopt(e)
	q.unhold(e)
	e.job.Result = result
	e.job.LeaseEnd = store.EndCompleted
	q.setState(e, store.Succeeded, now)
	q.finish(e, now)
	q.m.completions.WithLabelValues(e.job.Queue).Inc()
	if late {
		q.log.Info("late result accepted: no newer attempt had started", "job", e.job.ID, "attempt", ref.Attempt, "worker", worker)
	}
	c := q.write(e)
	q.mu.Unlock()
	return false, wait(c, "completing job "+ref.JobID)
}
