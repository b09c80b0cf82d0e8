package pgqueue

import (
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// cols are the columns scanJob reads, in its order; jcols the same with
// the table alias j.
const (
	cols = `id, queue, payload, state, attempt, max_attempts, lease_ms, coalesce(idempotency_key, ''), run_after, created_at,
		updated_at, lease_token, leased_by, leased_at, lease_deadline, lease_end, cancel_requested, result, last_error, finished_at`
	jcols = `j.id, j.queue, j.payload, j.state, j.attempt, j.max_attempts, j.lease_ms, coalesce(j.idempotency_key, ''), j.run_after, j.created_at,
		j.updated_at, j.lease_token, j.leased_by, j.leased_at, j.lease_deadline, j.lease_end, j.cancel_requested, j.result, j.last_error, j.finished_at`
)

func scanJob(row pgx.Row) (store.Job, error) {
	var (
		j                              store.Job
		state, end                     string
		attempt, maxAttempts           int32
		leaseMS                        int64
		leasedAt, deadline, finishedAt *time.Time
	)
	err := row.Scan(&j.ID, &j.Queue, &j.Payload, &state, &attempt, &maxAttempts, &leaseMS, &j.IdempotencyKey, &j.RunAfter, &j.CreatedAt,
		&j.UpdatedAt, &j.LeaseToken, &j.LeasedBy, &leasedAt, &deadline, &end, &j.CancelRequested, &j.Result, &j.LastError, &finishedAt)
	if err != nil {
		return store.Job{}, err
	}
	j.State, j.LeaseEnd = store.State(state), store.LeaseEnd(end)
	j.Attempt, j.MaxAttempts = uint32(attempt), uint32(maxAttempts)
	j.LeaseDuration = time.Duration(leaseMS) * time.Millisecond
	if leasedAt != nil {
		j.LeasedAt = *leasedAt
	}
	if deadline != nil {
		j.LeaseDeadline = *deadline
	}
	if finishedAt != nil {
		j.FinishedAt = *finishedAt
	}
	if len(j.Payload) == 0 {
		j.Payload = nil
	}
	return j, nil
}

func scanJobs(rows pgx.Rows) ([]store.Job, error) {
	defer rows.Close()
	var out []store.Job
	for rows.Next() {
		j, err := scanJob(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, j)
	}
	return out, rows.Err()
}
