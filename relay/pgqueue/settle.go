package pgqueue

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// completeSQL completes each listed lease that is still the worker's: held,
// or ended by expiry or release with no newer attempt started (the first
// valid result wins).
const completeSQL = `UPDATE relay_jobs j SET state = 'succeeded', result = u.result, lease_end = 'completed',
		finished_at = now(), updated_at = now()
	FROM unnest($1::text[], $2::integer[], $3::bytea[], $4::text[], $5::bytea[]) AS u(id, attempt, token, worker, result)
	WHERE j.id = u.id AND j.attempt = u.attempt AND j.lease_token = u.token AND j.leased_by = u.worker
		AND (j.state = 'leased' OR (j.state IN ('retrying', 'dead') AND j.lease_end IN ('expired', 'released')))
	RETURNING j.id, j.state <> 'leased'`

// Complete settles worker's lease ref with a result, durable when it
// returns. Repeating it with the same lease returns duplicate and keeps
// the first result; a lease that expired may still complete the job while
// no newer attempt has started, after that it gets queue.ErrLeaseLost.
func (q *Queue) Complete(ctx context.Context, worker string, ref queue.Ref, result []byte) (bool, error) {
	res := q.CompleteBatch(ctx, worker, []queue.Completion{{Ref: ref, Result: result}})
	return res[0].Duplicate, res[0].Err
}

// CompleteBatch settles several of worker's leases, each as Complete
// would, in one statement and one commit (shared with this replica's
// other calls waiting at the time).
func (q *Queue) CompleteBatch(ctx context.Context, worker string, cs []queue.Completion) []queue.CompleteResult {
	out := make([]queue.CompleteResult, len(cs))
	var sent []*completion
	var at []int // sent[k] answers out[at[k]]
	for i, c := range cs {
		what := "completing job " + c.Ref.JobID
		if err := queue.CheckResult(c.Result, q.opts.Queue.MaxResult); err != nil {
			out[i].Err = err
			continue
		}
		if err := q.check(what); err != nil {
			out[i].Err = err
			continue
		}
		result := c.Result
		if result == nil {
			result = []byte{}
		}
		sent = append(sent, &completion{worker: worker, ref: c.Ref, result: result, won: make(chan error, 1)})
		at = append(at, i)
	}
	if len(sent) == 0 {
		return out
	}
	if err := q.pend.addCompletions(sent...); err != nil {
		for _, i := range at {
			out[i].Err = fmt.Errorf("completing job %s: %w", cs[i].Ref.JobID, err)
		}
		return out
	}
	// Once handed over the statement runs whatever ctx does: its outcome
	// decides the answer.
	for k, c := range sent {
		i := at[k]
		err := <-c.won
		if errors.Is(err, errNotUpdated) {
			out[i].Duplicate, out[i].Err = q.completeLost(ctx, worker, c.ref)
			continue
		}
		out[i].Err = err
	}
	return out
}

var errNotUpdated = errors.New("not updated")

// completeLost answers a completion whose UPDATE matched no row: a repeat
// of an earlier one, or a lease that is not the worker's.
func (q *Queue) completeLost(ctx context.Context, worker string, ref queue.Ref) (bool, error) {
	j, err := q.Get(ctx, ref.JobID)
	if err != nil {
		return false, fmt.Errorf("completing job %s: %w", ref.JobID, err)
	}
	if sameLease(&j, worker, ref) && j.State == store.Succeeded && j.LeaseEnd == store.EndCompleted {
		return true, nil
	}
	return false, fmt.Errorf("completing job %s attempt %d: %w: %s", ref.JobID, ref.Attempt, queue.ErrLeaseLost, queue.LossReason(&j, ref))
}

// sameLease reports whether ref names j's current or last lease, by
// worker.
func sameLease(j *store.Job, worker string, ref queue.Ref) bool {
	return j.Attempt == ref.Attempt && j.LeasedBy == worker && len(ref.Token) > 0 && string(j.LeaseToken) == string(ref.Token)
}

// Fail settles worker's lease ref with an error: failed if permanent,
// else retrying after retryAfter (if positive) or the backoff, unless it
// was the last attempt (dead) or the job was cancelled. Repeating it
// returns the same answer.
func (q *Queue) Fail(ctx context.Context, worker string, ref queue.Ref, msg string, permanent bool, retryAfter time.Duration) (queue.FailResult, error) {
	msg, err := queue.CheckFail(msg, retryAfter)
	if err != nil {
		return queue.FailResult{}, err
	}
	what := "failing job " + ref.JobID
	if err := q.check(what); err != nil {
		return queue.FailResult{}, err
	}
	if retryAfter == 0 {
		retryAfter = queue.UseBackoff
	}
	// Read, decide, then one fenced UPDATE; if the row changed in between
	// (a cancel, a heartbeat racing it) decide again.
	for range 5 {
		j, err := q.Get(ctx, ref.JobID)
		if err != nil {
			return queue.FailResult{}, fmt.Errorf("%s: %w", what, err)
		}
		switch {
		case j.State == store.Leased && sameLease(&j, worker, ref):
		case sameLease(&j, worker, ref) && j.LeaseEnd == store.EndFailed:
			res := queue.FailResult{State: j.State, Duplicate: true}
			if j.State == store.Retrying {
				res.NextAttempt = j.RunAfter
			}
			return res, nil
		default:
			return queue.FailResult{}, fmt.Errorf("failing job %s attempt %d: %w: %s", ref.JobID, ref.Attempt, queue.ErrLeaseLost, queue.LossReason(&j, ref))
		}
		out := queue.AfterFailure(&j, permanent, retryAfter, q.opts.Queue.Backoff)
		ended, err := q.endLeases(ctx, []ending{{job: j, out: out, end: store.EndFailed, msg: msg}}, endPlain)
		if err != nil {
			return queue.FailResult{}, q.dbErr(ctx, what, err)
		}
		if len(ended) == 1 {
			res := queue.FailResult{State: ended[0].State}
			if ended[0].State == store.Retrying {
				res.NextAttempt = ended[0].RunAfter
			}
			return res, nil
		}
	}
	return queue.FailResult{}, fmt.Errorf("%s: %w: the job kept changing; retry", what, queue.ErrOverloaded)
}

// ending is one lease to end badly, with what the job becomes.
type ending struct {
	job store.Job
	out queue.Outcome
	end store.LeaseEnd
	msg string
}

// How endLeases finds its rows.
type endMode int

const (
	endPlain   endMode = iota // wait for row locks (a worker's Fail)
	endExpired                // skip locked rows; only leases past their deadline
	endRelease                // skip locked rows; only leases older than $grace
)

// endLeases ends leases in one statement fenced by each one's identity
// (and its cancel flag, which the outcome depends on). It returns the jobs
// it changed, as they are now.
func (q *Queue) endLeases(ctx context.Context, es []ending, mode endMode, extra ...any) ([]store.Job, error) {
	var (
		ids, workers, states, ends, msgs []string
		attempts                         []int32
		tokens                           [][]byte
		cancels                          []bool
		delays                           []int64
	)
	for _, e := range es {
		ids, workers = append(ids, e.job.ID), append(workers, e.job.LeasedBy)
		attempts, tokens = append(attempts, int32(e.job.Attempt)), append(tokens, e.job.LeaseToken)
		cancels, states = append(cancels, e.job.CancelRequested), append(states, string(e.out.State))
		ends, msgs, delays = append(ends, string(e.end)), append(msgs, e.msg), append(delays, e.out.Delay.Milliseconds())
	}
	fence := `j.state = 'leased' AND j.attempt = u.attempt AND j.lease_token = u.token AND j.leased_by = u.worker AND j.cancel_requested = u.cancel`
	from := `relay_jobs j, u WHERE j.id = u.id AND ` + fence
	switch mode {
	case endExpired:
		from += ` AND j.lease_deadline < now() AND j.lease_ms <= $10::bigint`
	case endRelease:
		from += ` AND j.leased_at < now() - $10::bigint * interval '1 millisecond'`
	}
	pick := ""
	if mode != endPlain {
		pick = `, l AS MATERIALIZED (SELECT j.id FROM ` + from + ` FOR UPDATE OF j SKIP LOCKED)`
		from = `u, l WHERE j.id = u.id AND j.id = l.id`
	} else {
		from = `u WHERE j.id = u.id AND ` + fence
	}
	sql := `WITH u AS (SELECT * FROM unnest($1::text[], $2::integer[], $3::bytea[], $4::text[], $5::boolean[], $6::text[], $7::text[], $8::text[], $9::bigint[])
			AS u(id, attempt, token, worker, cancel, state, lease_end, msg, delay_ms))` + pick + `
		UPDATE relay_jobs j SET state = u.state, lease_end = u.lease_end, last_error = u.msg, updated_at = now(),
			run_after = CASE WHEN u.state = 'retrying' THEN now() + u.delay_ms * interval '1 millisecond' ELSE j.run_after END,
			finished_at = CASE WHEN u.state = 'retrying' THEN NULL ELSE now() END
		FROM ` + from + `
		RETURNING ` + jcols
	args := []any{ids, attempts, tokens, workers, cancels, states, ends, msgs, delays}
	args = append(args, extra...)
	rows, err := q.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, err
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, err
	}
	for _, j := range jobs {
		if j.State == store.Retrying {
			q.jobsReady(j.Queue) // parked polls wait for its run_after
		}
		if j.State == store.Dead {
			q.log.Warn("job is dead: out of attempts", "job", j.ID, "queue", j.Queue, "attempts", j.Attempt, "last_error", j.LastError)
		}
	}
	return jobs, nil
}
