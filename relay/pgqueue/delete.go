package pgqueue

import (
	"context"
	"fmt"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Delete removes a finished job (succeeded, failed, dead or cancelled)
// and, with its row, its idempotency key; another is ErrConflict.
func (q *Queue) Delete(ctx context.Context, id string) (store.Job, error) {
	what := "deleting job " + id
	if err := q.check(what); err != nil {
		return store.Job{}, err
	}
	j, changed, err := q.change(ctx, what, `DELETE FROM relay_jobs
		WHERE id = $1 AND state IN ('succeeded', 'failed', 'dead', 'cancelled')
		RETURNING `+cols, id)
	if err != nil || changed {
		return j, err
	}
	if err := queue.CheckDeletable(&j); err != nil {
		return store.Job{}, fmt.Errorf("%s: %w", what, err)
	}
	// It finished between the two statements: try once more.
	return q.Delete(ctx, id)
}
