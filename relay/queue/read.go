package queue

import (
	"context"
	"fmt"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Get returns a job as it is now.
func (q *Queue) Get(ctx context.Context, id string) (store.Job, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.deleting[id] > 0 {
		return store.Job{}, fmt.Errorf("getting job %s: %w", id, store.ErrNotFound)
	}
	return q.current(ctx, id)
}

// List pages through jobs as the store has them (every acknowledged
// change is there; a lease extension by heartbeat is not).
func (q *Queue) List(ctx context.Context, f store.Filter) ([]store.Job, string, error) {
	if f.State != "" && !f.State.Valid() {
		return nil, "", invalid("state", "unknown state %q", f.State)
	}
	jobs, next, err := q.st.List(ctx, f)
	if err != nil {
		return nil, "", fmt.Errorf("listing jobs: %w", err)
	}
	return jobs, next, nil
}

// Counts is the number of jobs in each queue and state.
func (q *Queue) Counts() map[store.QueueState]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	out := make(map[store.QueueState]int, len(q.counts))
	for k, v := range q.counts {
		out[k] = v
	}
	return out
}

// QueueOf is the queue job id belongs to.
func (q *Queue) QueueOf(ctx context.Context, id string) (string, error) {
	q.mu.Lock()
	if e := q.find(id); e != nil {
		name := q.names.name(e.queue)
		q.mu.Unlock()
		return name, nil
	}
	q.mu.Unlock()
	j, err := q.st.Get(ctx, id)
	if err != nil {
		return "", err
	}
	return j.Queue, nil
}
