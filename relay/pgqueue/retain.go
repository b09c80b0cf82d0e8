package pgqueue

import (
	"context"
	"time"
)

// pruneBatch is how many finished jobs one prune statement deletes.
const pruneBatch = 1000

// pruneSQL deletes up to $2 succeeded, dead or cancelled jobs finished
// more than $1 ms ago. Rows another replica is pruning (or changing) are
// skipped, so every replica may run it at once.
const pruneSQL = `DELETE FROM relay_jobs WHERE id IN (
		SELECT id FROM relay_jobs
		WHERE state IN ('succeeded', 'dead', 'cancelled') AND finished_at < now() - $1::bigint * interval '1 millisecond'
		LIMIT $2 FOR UPDATE SKIP LOCKED)`

// pruneOnce deletes finished jobs older than Retain, a batch at a time,
// until none is left or the replica is closing. It returns how many.
func (q *Queue) pruneOnce() int64 {
	var total int64
	for q.ctx.Err() == nil && q.check("pruning") == nil {
		ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
		tag, err := q.pool.Exec(ctx, pruneSQL, q.opts.Retain.Milliseconds(), pruneBatch)
		cancel()
		if err != nil {
			q.log.Warn("could not prune finished jobs; trying again later", "err", q.dbErr(ctx, "pruning", err))
			break
		}
		total += tag.RowsAffected()
		if tag.RowsAffected() < pruneBatch {
			break
		}
	}
	if total > 0 {
		q.log.Info("pruned finished jobs", "jobs", total, "older_than", q.opts.Retain)
	}
	return total
}
