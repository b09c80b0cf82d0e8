package pgqueue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Lease leases up to r.Max ready jobs, waiting up to r.Wait for one: the
// leases are committed when it returns. It returns no jobs and no error
// when the wait ends empty, and ctx's error if ctx ended first.
func (q *Queue) Lease(ctx context.Context, r queue.LeaseRequest) ([]store.Job, error) {
	if err := queue.CheckLeaseRequest(&r, q.opts.Queue.MaxWait); err != nil {
		return nil, err
	}
	queues := slices.Compact(slices.Sorted(slices.Values(r.Queues)))
	deadline := time.Now().Add(r.Wait)
	var wake <-chan struct{}
	if r.Wait > 0 {
		ch, unpark := q.wake.park(queues)
		defer unpark()
		wake = ch
	}
	for {
		if err := q.check("leasing"); err != nil {
			return nil, err
		}
		jobs, next, err := q.leaseOnce(ctx, r.Worker, queues, r.Max, r.MaxBytes)
		if err != nil || len(jobs) > 0 {
			return jobs, err
		}
		left := time.Until(deadline)
		if left <= 0 {
			return nil, ctx.Err()
		}
		sleep := min(left, q.opts.PollInterval)
		if !next.IsZero() {
			sleep = min(sleep, max(time.Until(next), time.Millisecond))
		}
		t := time.NewTimer(sleep)
		select {
		case <-wake:
		case <-t.C:
		case <-ctx.Done():
		case <-q.ctx.Done():
		}
		t.Stop()
		if ctx.Err() != nil || q.ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
}

// leaseOnce runs one lease statement. With no job leased it says when the
// next held-back job of the queues is due (zero if none).
func (q *Queue) leaseOnce(ctx context.Context, worker string, queues []string, n, maxBytes int) ([]store.Job, time.Time, error) {
	jobs, err := q.leaseGrouped(worker, queues, n)
	if err != nil {
		return nil, time.Time{}, err
	}
	if ctx.Err() != nil {
		// The caller left while its call was in a shared statement.
		q.Unlease(worker, refs(jobs))
		return nil, time.Time{}, ctx.Err()
	}
	if len(jobs) == 0 {
		var held int
		var next *time.Time
		err := q.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM relay_jobs WHERE state = 'leased' AND leased_by = $2),
				(SELECT min(run_after) FROM relay_jobs WHERE state IN ('queued', 'retrying') AND queue = ANY($1::text[])
					AND queue NOT IN (SELECT queue FROM relay_paused_queues))`,
			queues, worker).Scan(&held, &next)
		if err != nil {
			return nil, time.Time{}, q.dbErr(ctx, "leasing", err)
		}
		if held >= q.opts.Queue.MaxLeasesPerWorker {
			return nil, time.Time{}, fmt.Errorf("leasing: %w: %s holds %d leases, the most allowed; settle some first", queue.ErrTooManyLeases, worker, held)
		}
		if next == nil {
			return nil, time.Time{}, nil
		}
		return nil, *next, nil
	}
	slices.SortFunc(jobs, byAge)
	// Keep the answer under maxBytes (the first job goes whatever its
	// size); the rest go back at once.
	if maxBytes > 0 {
		total := 0
		for i, j := range jobs {
			total += len(j.Payload)
			if i > 0 && total > maxBytes {
				q.Unlease(worker, refs(jobs[i:]))
				jobs = jobs[:i]
				break
			}
		}
	}
	for _, j := range jobs {
		q.qof.put(j.ID, j.Queue)
	}
	return jobs, time.Time{}, nil
}

func refs(jobs []store.Job) []queue.Ref {
	out := make([]queue.Ref, len(jobs))
	for i, j := range jobs {
		out[i] = queue.Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}
	}
	return out
}

// Unlease undoes leases whose Lease answer could not be sent: the jobs are
// ready again at once and the attempt is not counted.
func (q *Queue) Unlease(worker string, refs []queue.Ref) {
	if len(refs) == 0 || q.check("unleasing") != nil {
		return
	}
	ids, attempts, tokens := unzip(refs)
	ctx, cancel := context.WithTimeout(q.ctx, 10*time.Second)
	defer cancel()
	rows, err := q.pool.Query(ctx, `UPDATE relay_jobs j SET state = 'queued', attempt = j.attempt - 1, lease_token = NULL,
			leased_by = '', leased_at = NULL, lease_deadline = NULL, run_after = now(), updated_at = now()
		FROM unnest($1::text[], $2::integer[], $3::bytea[]) AS u(id, attempt, token)
		WHERE j.id = u.id AND j.attempt = u.attempt AND j.lease_token = u.token AND j.leased_by = $4 AND j.state = 'leased'
		RETURNING j.queue`, ids, attempts, tokens, worker)
	if err != nil {
		q.log.Warn("could not undo leases whose answer was lost; they expire instead", "worker", worker, "err", q.dbErr(ctx, "unleasing", err))
		return
	}
	names := map[string]bool{}
	for rows.Next() {
		var name string
		if rows.Scan(&name) == nil {
			names[name] = true
		}
	}
	rows.Close()
	for name := range names {
		q.jobsReady(name)
	}
}

func unzip(refs []queue.Ref) (ids []string, attempts []int32, tokens [][]byte) {
	for _, r := range refs {
		ids = append(ids, r.JobID)
		attempts = append(attempts, int32(r.Attempt))
		t := r.Token
		if t == nil {
			t = []byte{}
		}
		tokens = append(tokens, t)
	}
	return ids, attempts, tokens
}
