package client

import (
	"crypto/rand"
	"sync"

	"github.com/tunnel-dev/tunnel/relay/proto"
)

// LeaseSession numbers the calls of one lease loop, across connections,
// so that relay can tell a Lease answer the worker never read (written
// just before its connection died) and undo those leases: the jobs are
// ready again at once, at the attempt they had, instead of waiting out
// their leases and running again at the next attempt.
//
// Give every Lease of one loop the same session, whichever Client it goes
// through. A session's calls never overlap: Lease holds the session for
// the whole call. A new process takes a new session (NewLeaseSession).
type LeaseSession struct {
	id [16]byte

	mu       sync.Mutex // held through one Lease call
	seq      uint64     // the last call's number
	received uint64     // the number of the last call whose answer was read
}

// NewLeaseSession starts a session with a random name.
func NewLeaseSession() *LeaseSession {
	s := &LeaseSession{}
	_, _ = rand.Read(s.id[:]) // never fails (crypto/rand)
	return s
}

// begin takes the session for one call and numbers it in r.
func (s *LeaseSession) begin(r *proto.LeaseRequest) (done func(read bool)) {
	s.mu.Lock()
	s.seq++
	seq := s.seq
	r.Session, r.Seq, r.Received = s.id[:], seq, s.received
	return func(read bool) {
		if read {
			s.received = seq
		}
		s.mu.Unlock()
	}
}
