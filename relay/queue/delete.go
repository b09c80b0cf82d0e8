package queue

import (
	"context"
	"fmt"
	"slices"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Delete removes a finished job (succeeded, failed, dead or cancelled)
// and frees its idempotency key; it returns the job as it was. A job not
// finished is refused with ErrConflict. It is durable when it returns.
func (q *Queue) Delete(ctx context.Context, id string) (store.Job, error) {
	what := "deleting job " + id
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("%s: %w", what, err)
	}
	e, err := q.lookup(ctx, id)
	if err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := CheckDeletable(&e.job); err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("%s: %w", what, err)
	}
	if q.jobs[id] == e {
		delete(q.jobs, id)
		if k := (keyRef{e.job.Queue, e.job.IdempotencyKey}); q.keys[k] == e {
			delete(q.keys, k)
		}
	}
	k := store.QueueState{Queue: e.job.Queue, State: e.job.State}
	if q.counts[k]--; q.counts[k] <= 0 {
		delete(q.counts, k)
	}
	// Until the delete is durable the store still holds the record:
	// lookup answers ErrNotFound for it meanwhile.
	q.deleting[id]++
	c := q.st.Delete(id)
	j := e.job
	q.mu.Unlock()
	err = wait(c, what)
	q.mu.Lock()
	if q.deleting[id]--; q.deleting[id] <= 0 {
		delete(q.deleting, id)
	}
	q.mu.Unlock()
	return j, err
}

// deletable are the states a job may be deleted in.
var deletable = []store.State{store.Succeeded, store.Failed, store.Dead, store.Cancelled}

// CheckDeletable refuses, with ErrConflict, to delete a job that is not
// finished.
func CheckDeletable(j *store.Job) error {
	if !slices.Contains(deletable, j.State) {
		return fmt.Errorf("%w: it is %s; only a succeeded, failed, dead or cancelled job can be deleted (cancel it first)", ErrConflict, j.State)
	}
	return nil
}
