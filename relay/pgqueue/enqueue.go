package pgqueue

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Enqueue adds jobs in one transaction, all or none. A job whose
// idempotency key is already used in its queue (earlier, or earlier in the
// batch) is not added: the first job is returned instead. A concurrent
// enqueue of the same key on another replica waits on the unique index
// and then finds this one's job.
func (q *Queue) Enqueue(ctx context.Context, jobs []queue.NewJob) ([]queue.Enqueued, error) {
	if err := queue.CheckNewJobs(jobs, q.opts.Queue.MaxPayload); err != nil {
		return nil, err
	}
	if err := q.check("enqueueing"); err != nil {
		return nil, err
	}
	var size int64
	for i := range jobs {
		size += int64(len(jobs[i].Payload))
	}
	if err := q.checkRoom("enqueueing", len(jobs), size); err != nil {
		return nil, err
	}
	now := time.Now()
	type keyRef struct{ queue, key string }
	first := map[keyRef]int{} // earlier in the batch
	dupOf := make([]int, len(jobs))
	var (
		ids, queues, keys []string
		payloads          [][]byte
		attempts          []int32
		leaseMS, delayMS  []int64
		idx               []int
	)
	for i := range jobs {
		n := &jobs[i]
		dupOf[i] = -1
		if n.IdempotencyKey != "" {
			k := keyRef{n.Queue, n.IdempotencyKey}
			if f, ok := first[k]; ok {
				dupOf[i] = f
				continue
			}
			first[k] = i
		}
		ma, ld := n.MaxAttempts, n.LeaseDuration
		if ma == 0 {
			ma = q.opts.Queue.DefaultMaxAttempts
		}
		if ld == 0 {
			ld = q.opts.Queue.DefaultLease
		}
		var delay time.Duration
		if !n.RunAfter.IsZero() {
			delay = max(time.Until(n.RunAfter), 0)
		}
		p := n.Payload
		if p == nil {
			p = []byte{}
		}
		ids = append(ids, q.ids.Next(now))
		queues = append(queues, n.Queue)
		payloads = append(payloads, p)
		attempts = append(attempts, int32(ma))
		leaseMS = append(leaseMS, ld.Milliseconds())
		keys = append(keys, n.IdempotencyKey)
		delayMS = append(delayMS, delay.Milliseconds())
		idx = append(idx, i)
	}
	out := make([]queue.Enqueued, len(jobs))
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, `INSERT INTO relay_jobs (id, queue, payload, state, max_attempts, lease_ms, idempotency_key, run_after, created_at, updated_at)
			SELECT u.id, u.queue, u.payload, 'queued', u.max_attempts, u.lease_ms, nullif(u.key, ''),
				now() + u.delay_ms * interval '1 millisecond', now(), now()
			FROM unnest($1::text[], $2::text[], $3::bytea[], $4::integer[], $5::bigint[], $6::text[], $7::bigint[])
				AS u(id, queue, payload, max_attempts, lease_ms, key, delay_ms)
			ON CONFLICT (queue, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
			RETURNING `+cols, ids, queues, payloads, attempts, leaseMS, keys, delayMS)
		if err != nil {
			return err
		}
		added, err := scanJobs(rows)
		if err != nil {
			return err
		}
		byID := make(map[string]int, len(ids))
		for k, id := range ids {
			byID[id] = idx[k]
		}
		for _, j := range added {
			out[byID[j.ID]] = queue.Enqueued{Job: j}
		}
		// The rest met an existing key.
		for k, i := range idx {
			if out[i].Job.ID != "" {
				continue
			}
			ex, err := scanJob(tx.QueryRow(ctx, `SELECT `+cols+` FROM relay_jobs WHERE queue = $1 AND idempotency_key = $2`, queues[k], keys[k]))
			if err != nil {
				return err
			}
			out[i] = queue.Enqueued{Job: ex, Existing: true}
		}
		return nil
	})
	if err != nil {
		return nil, q.dbErr(ctx, "enqueueing", err)
	}
	for i, f := range dupOf {
		if f >= 0 {
			out[i] = queue.Enqueued{Job: out[f].Job, Existing: true}
		}
	}
	ready := map[string]bool{}
	var n int
	var b int64
	for _, e := range out {
		if !e.Existing {
			q.qof.put(e.Job.ID, e.Job.Queue)
			ready[e.Job.Queue] = true
			n++
			b += int64(len(e.Job.Payload))
		}
	}
	q.added(n, b)
	for name := range ready {
		q.jobsReady(name)
	}
	return out, nil
}
