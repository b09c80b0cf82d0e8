package pgqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// expireBatch bounds the leases one expiry pass ends.
const expireBatch = 1000

// expireOnce ends overdue leases; every replica runs it each
// ExpiryInterval.
func (q *Queue) expireOnce() {
	if _, err := q.Expire(q.ctx); err != nil && q.ctx.Err() == nil {
		q.log.Debug("expiring leases", "err", err)
	}
}

// Expire ends the leases whose deadline passed, as failed attempts, and
// says how many. A lease is expired only once this replica has been
// connected to the database for its job's lease duration (the restart
// grace): after an outage, workers get that long to heartbeat again.
func (q *Queue) Expire(ctx context.Context) (int, error) {
	up := q.connectedFor()
	if up <= 0 {
		return 0, nil
	}
	grace := up.Milliseconds() // leases of at most this duration
	if rg := q.opts.Queue.RestartGrace; rg > 0 {
		// One grace for every job, as the embedded queue has.
		if up < rg {
			return 0, nil
		}
		grace = queue.MaxLease.Milliseconds()
	}
	rows, err := q.pool.Query(ctx, `SELECT `+cols+` FROM relay_jobs
		WHERE state = 'leased' AND lease_deadline < now() AND lease_ms <= $1::bigint
		ORDER BY lease_deadline LIMIT $2`, grace, expireBatch)
	if err != nil {
		return 0, q.dbErr(ctx, "expiring leases", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return 0, q.dbErr(ctx, "expiring leases", err)
	}
	if len(jobs) == 0 {
		return 0, nil
	}
	es := make([]ending, len(jobs))
	for i, j := range jobs {
		es[i] = ending{job: j, end: store.EndExpired, out: queue.AfterFailure(&j, false, queue.UseBackoff, q.opts.Queue.Backoff),
			msg: fmt.Sprintf("lease expired: worker %s neither settled attempt %d nor heartbeat it by %s",
				j.LeasedBy, j.Attempt, j.LeaseDeadline.UTC().Format(time.RFC3339Nano))}
	}
	ended, err := q.endLeases(ctx, es, endExpired, grace)
	if err != nil {
		return 0, q.dbErr(ctx, "expiring leases", err)
	}
	if len(ended) > 0 {
		q.log.Info("leases expired", "jobs", len(ended))
	}
	return len(ended), nil
}
