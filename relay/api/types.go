package api

import (
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// JobRequest asks for one job.
type JobRequest struct {
	Queue string `json:"queue"`
	// Payload is the job's bytes (base64 in JSON). PayloadText is the same
	// as UTF-8 text; give one or neither.
	Payload     []byte `json:"payload,omitempty"`
	PayloadText string `json:"payload_text,omitempty"`
	// MaxAttempts: 0 means relay's default.
	MaxAttempts uint32 `json:"max_attempts,omitempty"`
	// LeaseDuration is a Go duration ("30s"); empty means relay's default.
	LeaseDuration string `json:"lease_duration,omitempty"`
	// IdempotencyKey makes a repeat of this request return the first job.
	IdempotencyKey string `json:"idempotency_key,omitempty"`
	// RunAfter holds the job back until then.
	RunAfter *time.Time `json:"run_after,omitempty"`
}

// BatchRequest is the body of POST /v1/jobs/batch.
type BatchRequest struct {
	Jobs []JobRequest `json:"jobs"`
}

// Job is a job as the API shows it. The lease token never leaves relay.
type Job struct {
	ID              string     `json:"id"`
	Queue           string     `json:"queue"`
	State           string     `json:"state"`
	Payload         []byte     `json:"payload"`
	Attempt         uint32     `json:"attempt"`
	MaxAttempts     uint32     `json:"max_attempts"`
	LeaseDuration   string     `json:"lease_duration"`
	IdempotencyKey  string     `json:"idempotency_key,omitempty"`
	RunAfter        time.Time  `json:"run_after"`
	CreatedAt       time.Time  `json:"created_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	LeasedBy        string     `json:"leased_by,omitempty"`
	LeaseDeadline   *time.Time `json:"lease_deadline,omitempty"`
	CancelRequested bool       `json:"cancel_requested,omitempty"`
	Result          []byte     `json:"result,omitempty"`
	LastError       string     `json:"last_error,omitempty"`
	FinishedAt      *time.Time `json:"finished_at,omitempty"`
	// Existing is set on an enqueue answered by an earlier job with the
	// same idempotency key.
	Existing bool `json:"existing,omitempty"`
}

// BatchResponse answers a batch, in request order.
type BatchResponse struct {
	Jobs []Job `json:"jobs"`
}

// ListResponse is one page of jobs; Next is the cursor of the next page
// (pass it as after=), empty on the last one.
type ListResponse struct {
	Jobs []Job  `json:"jobs"`
	Next string `json:"next,omitempty"`
}

// ErrorBody is the body of every error response.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

// ErrorDetail says what went wrong.
type ErrorDetail struct {
	// Code is one of invalid_argument, not_found, conflict,
	// too_large, queue_full, overloaded, unavailable, internal.
	Code    string `json:"code"`
	Message string `json:"message"`
	// Field names the request field at fault, for invalid_argument.
	Field string `json:"field,omitempty"`
}

func viewOf(j store.Job) Job {
	v := Job{
		ID:              j.ID,
		Queue:           j.Queue,
		State:           string(j.State),
		Payload:         j.Payload,
		Attempt:         j.Attempt,
		MaxAttempts:     j.MaxAttempts,
		LeaseDuration:   j.LeaseDuration.String(),
		IdempotencyKey:  j.IdempotencyKey,
		RunAfter:        j.RunAfter.UTC(),
		CreatedAt:       j.CreatedAt.UTC(),
		UpdatedAt:       j.UpdatedAt.UTC(),
		CancelRequested: j.CancelRequested,
		Result:          j.Result,
		LastError:       j.LastError,
	}
	if v.Payload == nil {
		v.Payload = []byte{}
	}
	if j.State == store.Leased {
		v.LeasedBy = j.LeasedBy
		d := j.LeaseDeadline.UTC()
		v.LeaseDeadline = &d
	}
	if !j.FinishedAt.IsZero() && j.State.Terminal() {
		f := j.FinishedAt.UTC()
		v.FinishedAt = &f
	}
	return v
}
