package worker

import (
	"errors"
	"testing"
)

// A dial problem's closing parenthesis is its hint; a lost connection
// keeps its own; since moves when the connection goes, not on each
// failed redial; reconnects count from the second connection.
func TestConnStatus(t *testing.T) {
	var s connStatus
	s.failed("nothing answered at r:1 within 15s (check relay.address)", "", errors.New("timeout"))
	if s.up || !s.since.IsZero() || s.problem.Message != "nothing answered at r:1 within 15s" || s.problem.Hint != "check relay.address" || s.problem.Error != "timeout" {
		t.Fatalf("after a failed dial: up %v since %v, %+v", s.up, s.since, *s.problem)
	}
	s.connected()
	up := s.since
	if !s.up || up.IsZero() || s.reconnects != 0 {
		t.Fatalf("connected: up %v since %v reconnects %d", s.up, up, s.reconnects)
	}
	s.failed("disconnected from relay at r:1", "the tunnel went away (maybe)", errors.New("idle"))
	down := s.since
	if s.up || !down.After(up) && !down.Equal(up) || s.problem.Hint != "the tunnel went away (maybe)" {
		t.Fatalf("lost: up %v since %v, %+v", s.up, down, *s.problem)
	}
	s.failed("cannot connect to relay at r:1", "", errors.New("refused"))
	if s.since != down || s.problem.Hint != "" {
		t.Fatalf("a failed redial moved since or made a hint: since %v, %+v", s.since, *s.problem)
	}
	s.connected()
	if s.reconnects != 1 {
		t.Fatalf("reconnects %d", s.reconnects)
	}
}
