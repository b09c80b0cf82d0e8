package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Cancel cancels a job. A queued or retrying job is cancelled at once. A
// leased one is marked: its worker is told at its next heartbeat, and the
// job ends cancelled when the lease fails or expires (a result that
// arrives first still completes it). Cancelling a cancelled job changes
// nothing; a finished job cannot be cancelled (ErrConflict).
func (q *Queue) Cancel(ctx context.Context, id string) (store.Job, error) {
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("cancelling job %s: %w", id, err)
	}
	e, err := q.lookup(ctx, id)
	if err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("cancelling job %s: %w", id, err)
	}
	now := time.Now()
	switch e.job.State {
	case store.Queued, store.Retrying:
		q.setState(e, store.Cancelled, now)
		q.finish(e, now)
	case store.Leased:
		if e.job.CancelRequested {
			j := e.job
			q.mu.Unlock()
			return j, nil
		}
		e.job.CancelRequested = true
		e.job.UpdatedAt = now
	case store.Cancelled:
		j := e.job
		q.mu.Unlock()
		return j, nil
	default:
		st := e.job.State
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("cancelling job %s: %w: it is already %s", id, ErrConflict, st)
	}
	q.m.cancels.WithLabelValues(e.job.Queue).Inc()
	c := q.write(e)
	j := e.job
	q.mu.Unlock()
	return j, wait(c, "cancelling job "+id)
}

// Retry puts a dead, failed or cancelled job back in its queue, ready at
// once, with its attempts counted afresh. Its last error is kept.
func (q *Queue) Retry(ctx context.Context, id string) (store.Job, error) {
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("retrying job %s: %w", id, err)
	}
	e, err := q.lookup(ctx, id)
	if err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("retrying job %s: %w", id, err)
	}
	switch e.job.State {
	case store.Dead, store.Failed, store.Cancelled:
	default:
		st := e.job.State
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("retrying job %s: %w: it is %s; only dead, failed or cancelled jobs can be retried", id, ErrConflict, st)
	}
	if q.live+1 > q.opts.MaxLiveJobs || q.bytes+int64(len(e.job.Payload)) > q.opts.MaxLiveBytes {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("retrying job %s: %w", id, ErrFull)
	}
	now := time.Now()
	q.adopt(e)
	q.addLive(e)
	j := &e.job
	q.setState(e, store.Queued, now)
	j.Attempt = 0
	j.RunAfter = now
	j.CancelRequested = false
	j.LeaseToken, j.LeasedBy, j.LeasedAt, j.LeaseDeadline, j.LeaseEnd = nil, "", time.Time{}, time.Time{}, ""
	j.Result = nil
	j.FinishedAt = time.Time{}
	q.makeReady(e)
	q.m.retries.WithLabelValues(j.Queue).Inc()
	c := q.write(e)
	q.dispatch(now)
	out := e.job
	q.mu.Unlock()
	return out, wait(c, "retrying job "+id)
}
