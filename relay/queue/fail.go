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
	e, _, err := q.lookup(ctx, ref.JobID)
	if err != nil {
		q.mu.Unlock()
		return FailResult{}, fmt.Errorf("failing job %s: %w", ref.JobID, err)
	}
	switch {
	case q.holds(e, worker, ref):
	case q.sameLease(e, worker, ref) && e.LeaseEnd() == store.EndFailed:
		res := FailResult{State: e.State(), Duplicate: true}
		if res.State == store.Retrying {
			res.NextAttempt = timeOf(e.runAfter)
		}
		q.mu.Unlock()
		return res, nil
	default:
		reason := q.lossReason(e, ref)
		q.m.fenced.WithLabelValues("fail").Inc()
		q.mu.Unlock()
		return FailResult{}, fmt.Errorf("failing job %s attempt %d: %w: %s", ref.JobID, ref.Attempt, ErrLeaseLost, reason)
	}
	now := time.Now()
	e.end = leaseEndCode(store.EndFailed)
	if retryAfter == 0 {
		retryAfter = useBackoff
	}
	q.failed(e, now, permanent, retryAfter, msg)
	res := FailResult{State: e.State()}
	if res.State == store.Retrying {
		res.NextAttempt = timeOf(e.runAfter)
	}
	rec := q.jobOf(e, now)
	rec.LastError = msg
	c := q.write1(rec, e)
	q.dispatch(now)
	q.mu.Unlock()
	return res, wait(c, "failing job "+ref.JobID)
}

// failed moves a job whose lease just ended badly on: cancelled if that
// was asked for, failed if permanent, dead on its last attempt, else
// retrying after retryAfter (useBackoff for its backoff, 0 for at once).
// lastErr is why, for the log.
func (q *Queue) failed(e *entry, now time.Time, permanent bool, retryAfter time.Duration, lastErr string) {
	q.unhold(e)
	j := store.Job{CancelRequested: e.cancel, Attempt: e.attempt, MaxAttempts: e.maxAtt}
	out := AfterFailure(&j, permanent, retryAfter, q.opts.Backoff)
	q.setState(e, out.State)
	name := q.names.name(e.queue)
	switch out.State {
	case store.Cancelled, store.Failed:
		q.finish(e)
	case store.Dead:
		q.finish(e)
		q.log.Warn("job is dead: out of attempts", "job", q.idString(e.id), "queue", name, "attempts", e.attempt, "last_error", lastErr)
	default:
		e.runAfter = now.Add(out.Delay).UnixNano()
		if out.Delay == 0 {
			q.makeReady(e)
		} else {
			q.pushTimer(e, e.runAfter)
		}
	}
	q.m.failures.WithLabelValues(name, string(out.State)).Inc()
}

// lossReason says why ref does not name e's current lease.
func (q *Queue) lossReason(e *entry, ref Ref) string {
	return lossReason(e.State(), e.LeaseEnd(), e.attempt, timeOf(e.deadline), sameLeaseToken(e, ref), ref)
}

// lossReason says why ref does not name the lease of a job in state st
// whose last lease (attempt, ending end, deadline) has the token ref has
// if tokenOK.
func lossReason(st store.State, end store.LeaseEnd, attempt uint32, deadline time.Time, tokenOK bool, ref Ref) string {
	switch {
	case attempt != ref.Attempt:
		return fmt.Sprintf("attempt %d is the job's current one (state %s)", attempt, st)
	case !tokenOK:
		return "the lease token or worker does not match"
	case st == store.Leased:
		return "the lease is held"
	case end == store.EndExpired:
		return fmt.Sprintf("the lease expired at %s and the job is %s", deadline.UTC().Format(time.RFC3339Nano), st)
	default:
		return fmt.Sprintf("the job is %s", st)
	}
}

func sameLeaseToken(e *entry, ref Ref) bool {
	return len(ref.Token) == len(e.token) && e.token != ([16]byte{}) && string(e.token[:]) == string(ref.Token)
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
