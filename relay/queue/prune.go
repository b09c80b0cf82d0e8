package queue

import (
	"context"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Pruning finished jobs past Options.Retain: every pruneEvery, batches of
// pruneBatch deletions, each one group commit, until none is left.
const (
	pruneEvery = time.Minute
	pruneBatch = 1000
)

// maybePrune prunes if Options.Retain is set and pruneEvery (or the
// retention, if shorter) has passed; only run calls it.
func (q *Queue) maybePrune(now time.Time) {
	if q.opts.Retain <= 0 || now.Sub(q.pruned) < min(pruneEvery, q.opts.Retain) {
		return
	}
	q.pruned = now
	if _, err := q.Prune(context.Background(), now.Add(-q.opts.Retain)); err != nil {
		q.log.Warn("pruning finished jobs", "err", err)
	}
}

// Prune deletes the succeeded, dead and cancelled jobs that finished
// before cutoff (a failed one is kept until it is retried or deleted), with their
// idempotency keys, in batches of pruneBatch, and returns how many it
// deleted. Each batch is durable before the next is read.
func (q *Queue) Prune(ctx context.Context, cutoff time.Time) (int, error) {
	total := 0
	for {
		n, err := q.pruneBatch(ctx, cutoff)
		total += n
		if err != nil || n < pruneBatch {
			if total > 0 {
				q.log.Info("finished jobs pruned", "jobs", total, "finished_before", cutoff.UTC().Format(time.RFC3339))
			}
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-q.closing:
			return total, ErrClosed
		default:
		}
	}
}

// pruneBatch deletes up to pruneBatch jobs that finished before cutoff
// and says how many.
func (q *Queue) pruneBatch(ctx context.Context, cutoff time.Time) (int, error) {
	ids, err := q.st.Finished(ctx, cutoff, pruneBatch)
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return 0, err
	}
	// Under q.mu, from the store's records as handed over: a job retried
	// since the store listed it is live again, and stays.
	var finished []store.Job
	for _, id := range ids {
		if q.find(id) != nil || q.deleting[id] > 0 {
			continue
		}
		j, err := q.st.Get(ctx, id)
		at := j.FinishedAt
		if at.IsZero() {
			at = j.UpdatedAt
		}
		if err != nil || j.State == store.Failed || !j.State.Terminal() || !at.Before(cutoff) {
			continue // retried (and maybe finished again) since
		}
		finished = append(finished, j)
	}
	if len(finished) == 0 {
		q.mu.Unlock()
		return 0, nil
	}
	c := q.remove(finished)
	q.mu.Unlock()
	err = wait(c, "pruning finished jobs")
	gone := make([]string, len(finished))
	for i := range finished {
		gone[i] = finished[i].ID
	}
	q.forgetDeleting(gone...)
	return len(finished), err
}
