package store

import (
	"fmt"
	"time"
)

// State is where a job is in its life.
//
//	queued ──lease──▶ leased ──complete──▶ succeeded
//	   ▲                │
//	   │                ├─fail / lease expired─▶ retrying ──backoff──▶ (leasable again)
//	   │                ├─fail, out of attempts or expired on the last─▶ dead
//	   │                ├─fail, permanent─▶ failed
//	   │                └─cancel requested, then fail or expiry─▶ cancelled
//	   └──────────── retry (from dead, failed or cancelled)
//
// A queued or retrying job is cancelled at once.
type State string

// States.
const (
	Queued    State = "queued"
	Leased    State = "leased"
	Retrying  State = "retrying"
	Succeeded State = "succeeded"
	Failed    State = "failed"
	Dead      State = "dead"
	Cancelled State = "cancelled"
)

// States lists every state, live ones first.
func States() []State {
	return []State{Queued, Leased, Retrying, Succeeded, Failed, Dead, Cancelled}
}

// Terminal reports whether s is an end state (only a retry leaves it).
func (s State) Terminal() bool {
	switch s {
	case Succeeded, Failed, Dead, Cancelled:
		return true
	}
	return false
}

// Valid reports whether s is one of States.
func (s State) Valid() bool {
	for _, t := range States() {
		if s == t {
			return true
		}
	}
	return false
}

// ParseState parses a state name.
func ParseState(s string) (State, error) {
	if st := State(s); st.Valid() {
		return st, nil
	}
	return "", fmt.Errorf("unknown state %q; want one of queued, leased, retrying, succeeded, failed, dead, cancelled", s)
}

// LeaseEnd says how a job's last lease ended.
type LeaseEnd string

// Lease ends.
const (
	EndCompleted LeaseEnd = "completed"
	EndFailed    LeaseEnd = "failed"
	EndExpired   LeaseEnd = "expired"
	EndReleased  LeaseEnd = "released" // the worker said it no longer holds it
)

// Job is one job's record. Byte slices are never changed in place once
// set, so a copy of a Job can be handed to the store while the queue goes
// on changing its own.
type Job struct {
	ID             string        `json:"id"`
	Queue          string        `json:"queue"`
	Payload        []byte        `json:"payload,omitempty"`
	State          State         `json:"state"`
	Attempt        uint32        `json:"attempt"` // deliveries since enqueue (or the last retry)
	MaxAttempts    uint32        `json:"max_attempts"`
	LeaseDuration  time.Duration `json:"lease_duration"`
	IdempotencyKey string        `json:"idempotency_key,omitempty"`
	// RunAfter is when a queued or retrying job may be leased.
	RunAfter  time.Time `json:"run_after"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`

	// The current lease, or the last one once it ended.
	LeaseToken    []byte    `json:"lease_token,omitempty"`
	LeasedBy      string    `json:"leased_by,omitempty"`
	LeasedAt      time.Time `json:"leased_at,omitzero"`
	LeaseDeadline time.Time `json:"lease_deadline,omitzero"`
	LeaseEnd      LeaseEnd  `json:"lease_end,omitempty"`
	// CancelRequested is set when a leased job is cancelled: its worker is
	// told at its next heartbeat, and the job ends cancelled unless it
	// completes first.
	CancelRequested bool `json:"cancel_requested,omitempty"`

	Result     []byte    `json:"result,omitempty"`
	LastError  string    `json:"last_error,omitempty"`
	FinishedAt time.Time `json:"finished_at,omitzero"`

	// PayloadSize is len(Payload) as the store has it, also on the
	// records Live gives, which carry no payload.
	PayloadSize int `json:"-"`
}
