package queue

import (
	"context"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Backend is the job state machine as relay's worker server and producer
// API drive it. *Queue (the embedded store) is one; relay/pgqueue
// (PostgreSQL, several relay replicas on one database) is another. Both
// keep the same semantics, checked by relay/queue/queuetest.
type Backend interface {
	// Enqueue adds jobs, all or none, durable when it returns; a job whose
	// idempotency key is already used in its queue returns the first job.
	Enqueue(ctx context.Context, jobs []NewJob) ([]Enqueued, error)
	// Lease leases up to r.Max ready jobs, waiting up to r.Wait.
	Lease(ctx context.Context, r LeaseRequest) ([]store.Job, error)
	// Unlease undoes leases whose Lease answer could not be sent.
	Unlease(worker string, refs []Ref)
	// Heartbeat extends every lease listed, in one call; with allHeld the
	// worker's unlisted leases are released.
	Heartbeat(worker string, refs []Ref, allHeld bool) ([]LeaseStatus, error)
	// Complete and Fail settle a lease, fenced by its full identity.
	Complete(ctx context.Context, worker string, ref Ref, result []byte) (duplicate bool, err error)
	Fail(ctx context.Context, worker string, ref Ref, msg string, permanent bool, retryAfter time.Duration) (FailResult, error)
	Cancel(ctx context.Context, id string) (store.Job, error)
	Retry(ctx context.Context, id string) (store.Job, error)
	// Delete removes a finished job (succeeded, failed, dead or
	// cancelled) and frees its idempotency key; another is ErrConflict.
	Delete(ctx context.Context, id string) (store.Job, error)
	Get(ctx context.Context, id string) (store.Job, error)
	List(ctx context.Context, f store.Filter) ([]store.Job, string, error)
	QueueOf(ctx context.Context, id string) (string, error)
	// Pause stops leases of a queue (long polls get none of its jobs;
	// enqueues go on) until Resume. Both are durable when they return, and
	// hold across a restart and on every replica.
	Pause(ctx context.Context, queue string) error
	Resume(ctx context.Context, queue string) error
	// Paused names the paused queues, sorted.
	Paused(ctx context.Context) ([]string, error)
	// Counts is the number of jobs in each queue and state (it may lag by
	// a few seconds on a shared database).
	Counts() map[store.QueueState]int
	// Rates is what each queue's jobs did over the last RateWindow.
	Rates(ctx context.Context) (map[string]Rate, error)
	// Ready is nil while the queue can take work.
	Ready() error
	Close() error
}

var _ Backend = (*Queue)(nil)

// CheckNewJobs checks an Enqueue batch against the limits every backend
// shares, naming the field that is wrong.
func CheckNewJobs(jobs []NewJob, maxPayload int) error {
	if len(jobs) == 0 {
		return invalid("jobs", "empty; give at least one job")
	}
	if len(jobs) > MaxBatch {
		return invalid("jobs", "%d jobs; at most %d in one batch", len(jobs), MaxBatch)
	}
	for i := range jobs {
		field := ""
		if len(jobs) > 1 {
			field = fmt.Sprintf("jobs[%d].", i)
		}
		if err := validate(&jobs[i], field, maxPayload); err != nil {
			return err
		}
	}
	return nil
}

// CheckLeaseRequest checks a Lease call and caps its wait at maxWait.
func CheckLeaseRequest(r *LeaseRequest, maxWait time.Duration) error {
	if err := checkLease(r); err != nil {
		return err
	}
	r.Wait = min(max(r.Wait, 0), maxWait)
	return nil
}

// CheckResult checks a Complete's result against the cap.
func CheckResult(result []byte, maxResult int) error {
	if len(result) > maxResult {
		return invalid("result", "%d bytes; at most %d", len(result), maxResult)
	}
	return nil
}

// CheckFail checks a Fail's retry delay and cuts its message to
// MaxErrorLen; an empty message gets a stock one.
func CheckFail(msg string, retryAfter time.Duration) (string, error) {
	if retryAfter < 0 || retryAfter > MaxLease {
		return "", invalid("retry_after", "%s; want 0 to %s", retryAfter, MaxLease)
	}
	msg = truncate(msg, MaxErrorLen)
	if msg == "" {
		msg = "failed (the worker gave no reason)"
	}
	return msg, nil
}

// Outcome is what a job becomes when a lease of it ends badly.
type Outcome struct {
	State store.State
	// Delay is how long a retrying job waits before it is ready.
	Delay time.Duration
}

// AfterFailure decides a job's next state when its lease attempt ended
// badly: cancelled if that was asked for, failed if permanent, dead on its
// last attempt, else retrying after retryAfter (negative for the backoff).
func AfterFailure(j *store.Job, permanent bool, retryAfter time.Duration, b Backoff) Outcome {
	switch {
	case j.CancelRequested:
		return Outcome{State: store.Cancelled}
	case permanent:
		return Outcome{State: store.Failed}
	case j.Attempt >= j.MaxAttempts:
		return Outcome{State: store.Dead}
	}
	if retryAfter < 0 {
		b.setDefaults()
		retryAfter = b.Delay(j.Attempt)
	}
	return Outcome{State: store.Retrying, Delay: retryAfter}
}

// UseBackoff, as AfterFailure's retryAfter, asks for the job's backoff.
const UseBackoff = useBackoff

// LossReason says why ref does not name j's current lease.
func LossReason(j *store.Job, ref Ref) string {
	tokenOK := len(ref.Token) > 0 && string(j.LeaseToken) == string(ref.Token)
	return lossReason(j.State, j.LeaseEnd, j.Attempt, j.LeaseDeadline, tokenOK, ref)
}

// SetDefaults fills in the zero fields of o with the defaults named on
// each; backends other than *Queue use it for the settings they share.
func (o *Options) SetDefaults() { o.setDefaults() }
