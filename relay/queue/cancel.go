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
	e, rec, err := q.lookup(ctx, id)
	if err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("cancelling job %s: %w", id, err)
	}
	now := time.Now()
	switch e.State() {
	case store.Queued, store.Retrying:
		q.setState(e, store.Cancelled)
		q.finish(e)
	case store.Leased:
		if e.cancel {
			j, err := q.current(ctx, id)
			q.mu.Unlock()
			return j, err
		}
		e.cancel = true
	case store.Cancelled:
		q.mu.Unlock()
		return *rec, nil
	default:
		st := e.State()
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("cancelling job %s: %w: it is already %s", id, ErrConflict, st)
	}
	q.m.cancels.WithLabelValues(q.names.name(e.queue)).Inc()
	c := q.write1(q.jobOf(e, now), e)
	j, err := q.current(ctx, id)
	q.mu.Unlock()
	if err != nil {
		return store.Job{}, fmt.Errorf("cancelling job %s: %w", id, err)
	}
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
	e, _, err := q.lookup(ctx, id)
	if err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("retrying job %s: %w", id, err)
	}
	switch st := e.State(); st {
	case store.Dead, store.Failed, store.Cancelled:
	default:
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("retrying job %s: %w: it is %s; only dead, failed or cancelled jobs can be retried", id, ErrConflict, st)
	}
	if q.live+1 > q.opts.MaxLiveJobs || q.bytes+int64(e.size) > q.opts.MaxLiveBytes {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("retrying job %s: %w", id, ErrFull)
	}
	now := time.Now()
	e = q.adopt(e)
	q.setState(e, store.Queued)
	e.attempt = 0
	e.runAfter = now.UnixNano()
	e.cancel = false
	e.token, e.worker, e.leasedAt, e.deadline, e.end = [16]byte{}, 0, 0, 0, 0
	q.makeReady(e)
	q.m.retries.WithLabelValues(q.names.name(e.queue)).Inc()
	c := q.write1(q.jobOf(e, now), e)
	q.dispatch(now)
	out, err := q.current(ctx, id)
	q.mu.Unlock()
	if err != nil {
		return store.Job{}, fmt.Errorf("retrying job %s: %w", id, err)
	}
	return out, wait(c, "retrying job "+id)
}
