package queue

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// useBackoff asks failed for the job's backoff delay.
const useBackoff = -1

// FailResult is what became of a failed job.
type FailResult struct {
	// State is retrying, dead, failed or cancelled.
	State store.State
	// NextAttempt is when a retrying job is ready again.
	NextAttempt time.Time
	// Duplicate is set when this lease had already failed the job.
	Duplicate bool
}

// Fail settles worker's lease ref with an error. A permanent failure ends
// the job failed; otherwise it retries after retryAfter (if positive) or
// its backoff, unless that was its last attempt (dead) or it was
// cancelled. Repeating a Fail returns the same answer.
func (q *Queue) Fail(ctx context.Context, worker string, ref Ref, msg string, permanent bool, retryAfter time.Duration) (FailResult, error) {
	msg, err := CheckFail(msg, retryAfter)
	if err != nil {
		return FailResult{}, err
	}
	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return FailResult{}, fmt.Errorf("failing job %s: %w", ref.JobID, err)
	}
	e, err := q.lookup(ctx, ref.JobID)
	if err != nil {
		q.mu.Unlock()
		return FailResult{}, fmt.Errorf("failing job %s: %w", ref.JobID, err)
	}
	switch {
	case holds(e, worker, ref):
	case sameLease(e, worker, ref) && e.job.LeaseEnd == store.EndFailed:
		res := FailResult{State: e.job.State, Duplicate: true}
		if e.job.State == store.Retrying {
			res.NextAttempt = e.job.RunAfter
		}
		q.mu.Unlock()
		return res, nil
	default:
		reason := lossReason(e, ref)
		q.m.fenced.WithLabelValues("fail").Inc()
		q.mu.Unlock()
		return FailResult{}, fmt.Errorf("failing job %s attempt %d: %w: %s", ref.JobID, ref.Attempt, ErrLeaseLost, reason)
	}
	now := time.Now()
	e.job.LastError = msg
	e.job.LeaseEnd = store.EndFailed
	if retryAfter == 0 {
		retryAfter = useBackoff
	}
	q.failed(e, now, permanent, retryAfter)
	res := FailResult{State: e.job.State}
	if e.job.State == store.Retrying {
		res.NextAttempt = e.job.RunAfter
	}
	c := q.write(e)
	q.dispatch(now)
	q.mu.Unlock()
	return res, wait(c, "failing job "+ref.JobID)
}

// failed moves a job whose lease just ended badly on: cancelled if that
// was asked for, failed if permanent, dead on its last attempt, else
// retrying after retryAfter (useBackoff for its backoff, 0 for at once).
func (q *Queue) failed(e *entry, now time.Time, permanent bool, retryAfter time.Duration) {
	j := &e.job
	q.unhold(e)
	out := AfterFailure(j, permanent, retryAfter, q.opts.Backoff)
	q.setState(e, out.State, now)
	switch out.State {
	case store.Cancelled, store.Failed:
		q.finish(e, now)
	case store.Dead:
		q.finish(e, now)
		q.log.Warn("job is dead: out of attempts", "job", j.ID, "queue", j.Queue, "attempts", j.Attempt, "last_error", j.LastError)
	default:
		j.RunAfter = now.Add(out.Delay)
		if out.Delay == 0 {
			q.makeReady(e)
		} else {
			q.pushTimer(e, j.RunAfter)
		}
	}
	q.m.failures.WithLabelValues(j.Queue, string(j.State)).Inc()
}

// lossReason says why ref does not name e's current lease.
func lossReason(e *entry, ref Ref) string {
	j := &e.job
	switch {
	case j.Attempt != ref.Attempt:
		return fmt.Sprintf("attempt %d is the job's current one (state %s)", j.Attempt, j.State)
	case !sameLeaseToken(e, ref):
		return "the lease token or worker does not match"
	case j.State == store.Leased:
		return "the lease is held"
	case j.LeaseEnd == store.EndExpired:
		return fmt.Sprintf("the lease expired at %s and the job is %s", j.LeaseDeadline.UTC().Format(time.RFC3339Nano), j.State)
	default:
		return fmt.Sprintf("the job is %s", j.State)
	}
}

func sameLeaseToken(e *entry, ref Ref) bool {
	return len(ref.Token) > 0 && string(e.job.LeaseToken) == string(ref.Token)
}

// truncate cuts s to at most n bytes on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
