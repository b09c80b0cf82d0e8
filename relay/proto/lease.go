package proto

import "fmt"

// LeaseState is what a heartbeat learns of one lease: relay's queue
// decides it, the wire carries it as LeaseStatus_State, and the client
// reports it to the worker.
type LeaseState uint8

// Lease states.
const (
	// LeaseHeld: extended until the new deadline; carry on.
	LeaseHeld LeaseState = iota
	// LeaseCancelRequested: the job was cancelled; stop it and fail it
	// (or let the lease go). The lease was still extended, so there is
	// time to.
	LeaseCancelRequested
	// LeaseLost: not the worker's lease any more; stop and drop the job.
	LeaseLost
)

func (s LeaseState) String() string {
	switch s {
	case LeaseHeld:
		return "held"
	case LeaseCancelRequested:
		return "cancel_requested"
	case LeaseLost:
		return "lost"
	}
	return fmt.Sprintf("LeaseState(%d)", uint8(s))
}

// Wire is s as a LeaseStatus carries it; any state but held and
// cancel-requested is sent as lost.
func (s LeaseState) Wire() LeaseStatus_State {
	switch s {
	case LeaseHeld:
		return LeaseStatus_HELD
	case LeaseCancelRequested:
		return LeaseStatus_CANCEL_REQUESTED
	}
	return LeaseStatus_LOST
}

// LeaseStateOf reads a LeaseStatus's state; an unknown value reads as
// lost, so a worker stops rather than works on without a lease.
func LeaseStateOf(w LeaseStatus_State) LeaseState {
	switch w {
	case LeaseStatus_HELD:
		return LeaseHeld
	case LeaseStatus_CANCEL_REQUESTED:
		return LeaseCancelRequested
	}
	return LeaseLost
}
