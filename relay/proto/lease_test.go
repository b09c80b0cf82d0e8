package proto

import "testing"

func TestLeaseState(t *testing.T) {
	tests := []struct {
		s    LeaseState
		name string
		wire LeaseStatus_State
		back LeaseState
	}{
		{LeaseHeld, "held", LeaseStatus_HELD, LeaseHeld},
		{LeaseCancelRequested, "cancel_requested", LeaseStatus_CANCEL_REQUESTED, LeaseCancelRequested},
		{LeaseLost, "lost", LeaseStatus_LOST, LeaseLost},
		{LeaseState(9), "LeaseState(9)", LeaseStatus_LOST, LeaseLost},
	}
	for _, tt := range tests {
		if got := tt.s.String(); got != tt.name {
			t.Errorf("LeaseState(%d).String() = %q, want %q", uint8(tt.s), got, tt.name)
		}
		if got := tt.s.Wire(); got != tt.wire {
			t.Errorf("%v.Wire() = %v, want %v", tt.s, got, tt.wire)
		}
		if got := LeaseStateOf(tt.s.Wire()); got != tt.back {
			t.Errorf("LeaseStateOf(%v) = %v, want %v", tt.s.Wire(), got, tt.back)
		}
	}
	if got := LeaseStateOf(LeaseStatus_State(7)); got != LeaseLost {
		t.Errorf("LeaseStateOf(7) = %v, want lost", got)
	}
}
