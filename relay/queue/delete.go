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
	if e := q.find(id); e != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("%s: %w", what, CheckDeletable(&store.Job{State: e.State()}))
	}
	_, rec, err := q.lookup(ctx, id)
	if err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("%s: %w", what, err)
	}
	if err := CheckDeletable(rec); err != nil {
		q.mu.Unlock()
		return store.Job{}, fmt.Errorf("%s: %w", what, err)
	}
	c := q.remove([]store.Job{*rec})
	q.mu.Unlock()
	err = wait(c, what)
	q.forgetDeleting(rec.ID)
	return *rec, err
}

// remove hands the deletion of finished jobs to the store, keeping the
// counts. Until it is durable the file still holds the records: lookup
// answers ErrNotFound for them meanwhile (forgetDeleting ends that).
func (q *Queue) remove(jobs []store.Job) *store.Commit {
	ids := make([]string, len(jobs))
	for i := range jobs {
		k := store.QueueState{Queue: jobs[i].Queue, State: jobs[i].State}
		if q.counts[k]--; q.counts[k] <= 0 {
			delete(q.counts, k)
		}
		q.deleting[jobs[i].ID]++
		ids[i] = jobs[i].ID
	}
	return q.st.Delete(ids...)
}

func (q *Queue) forgetDeleting(ids ...string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, id := range ids {
		if q.deleting[id]--; q.deleting[id] <= 0 {
			delete(q.deleting, id)
		}
	}
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
