package pgqueue

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Pause stops leases of the queue on every replica until Resume: the lease
// statement skips queues in relay_paused_queues; enqueues go on.
func (q *Queue) Pause(ctx context.Context, name string) error {
	return q.setPaused(ctx, "pausing queue "+name, `INSERT INTO relay_paused_queues (queue) VALUES ($1) ON CONFLICT (queue) DO NOTHING`, name)
}

// Resume lets the queue's jobs be leased again and wakes the long polls
// waiting for it, here and on the other replicas.
func (q *Queue) Resume(ctx context.Context, name string) error {
	if err := q.setPaused(ctx, "resuming queue "+name, `DELETE FROM relay_paused_queues WHERE queue = $1`, name); err != nil {
		return err
	}
	q.jobsReady(name)
	return nil
}

// setPaused checks the name and runs stmt on it.
func (q *Queue) setPaused(ctx context.Context, what, stmt, name string) error {
	if err := queue.CheckQueueName(name); err != nil {
		return err
	}
	if err := q.check(what); err != nil {
		return err
	}
	if _, err := q.pool.Exec(ctx, stmt, name); err != nil {
		return q.dbErr(ctx, what, err)
	}
	return nil
}

// Paused names the paused queues, sorted.
func (q *Queue) Paused(ctx context.Context) ([]string, error) {
	if err := q.check("listing paused queues"); err != nil {
		return nil, err
	}
	rows, err := q.pool.Query(ctx, `SELECT queue FROM relay_paused_queues ORDER BY queue`)
	if err != nil {
		return nil, q.dbErr(ctx, "listing paused queues", err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, q.dbErr(ctx, "listing paused queues", err)
	}
	if names == nil {
		names = []string{}
	}
	return names, nil
}
