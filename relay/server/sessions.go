package server

import (
	"errors"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Lease sessions. A worker's lease loop names itself with a session and
// numbers its calls, which never overlap (proto.LeaseRequest). relay keeps
// the one answer of each session that is not yet known to be read: the
// last one that leased jobs. The next call says whether the worker read
// it (received ≥ its seq); if not, the answer was lost (written just
// before the connection died, or abandoned by the worker) and its leases
// are undone, as if never granted. So a worker that reconnects costs its
// jobs no attempt. The sessions live in this process's memory: another
// replica does not know them, and such jobs wait for their leases to
// expire, as they do for a worker that sends no session.
const (
	// maxSessionsPerWorker bounds the sessions one worker name may have;
	// past it the least recently used one is forgotten (counted).
	maxSessionsPerWorker = 64
	// sessionIdle is how long a session without a call is kept.
	sessionIdle  = 10 * time.Minute
	sessionIDLen = 16
)

// errSessionSeq refuses a call numbered no higher than one before it.
var errSessionSeq = errors.New("seq must start at 1 and grow with each call of the session")

type sessionKey struct {
	worker string
	id     [sessionIDLen]byte
}

type leaseSession struct {
	latest     uint64      // the highest seq seen
	pendingSeq uint64      // the seq of the answer not known to be read
	pending    []queue.Ref // its leases
	used       time.Time
}

// leaseSessions is every lease session of this process, with its lock.
type leaseSessions struct {
	mu        sync.Mutex
	m         map[sessionKey]*leaseSession
	perWorker map[string]int
}

func newLeaseSessions() *leaseSessions {
	return &leaseSessions{m: map[sessionKey]*leaseSession{}, perWorker: map[string]int{}}
}

// begin records call seq of a session, which says the worker read the
// answer of call received. It returns the leases of an earlier answer
// that the worker did not read, to undo, and how many sessions it forgot
// to make room.
func (ls *leaseSessions) begin(k sessionKey, seq, received uint64, now time.Time) (undo []queue.Ref, evicted int, err error) {
	if seq == 0 {
		return nil, 0, errSessionSeq
	}
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.m[k]
	if s == nil {
		evicted = ls.makeRoom(k.worker, now)
		s = &leaseSession{}
		ls.m[k] = s
		ls.perWorker[k.worker]++
	}
	if seq <= s.latest {
		return nil, evicted, errSessionSeq
	}
	s.latest, s.used = seq, now
	if s.pending != nil && s.pendingSeq > received {
		undo = s.pending
	}
	s.pending, s.pendingSeq = nil, 0
	return undo, evicted, nil
}

// answered records the leases of call seq's answer, before it is sent.
// stale is true when the worker has already made a later call: it has
// given this one up and will not read the answer.
func (ls *leaseSessions) answered(k sessionKey, seq uint64, refs []queue.Ref) (stale bool) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	s := ls.m[k]
	if s == nil || s.latest > seq {
		// Forgotten (evicted) or superseded: no later call will settle it.
		return s != nil
	}
	s.pending, s.pendingSeq = refs, seq
	return false
}

// makeRoom forgets idle sessions and, past the bound, the worker's least
// recently used one. It returns how many of the worker's it forgot for the
// bound.
func (ls *leaseSessions) makeRoom(worker string, now time.Time) int {
	if ls.perWorker[worker] < maxSessionsPerWorker {
		if len(ls.m)%256 == 255 {
			ls.sweep(now)
		}
		return 0
	}
	ls.sweep(now)
	evicted := 0
	for ls.perWorker[worker] >= maxSessionsPerWorker {
		var oldest sessionKey
		var at time.Time
		for k, s := range ls.m {
			if k.worker == worker && (at.IsZero() || s.used.Before(at)) {
				oldest, at = k, s.used
			}
		}
		ls.forget(oldest)
		evicted++
	}
	return evicted
}

// sweep forgets sessions idle past sessionIdle.
func (ls *leaseSessions) sweep(now time.Time) {
	for k, s := range ls.m {
		if now.Sub(s.used) > sessionIdle {
			ls.forget(k)
		}
	}
}

func (ls *leaseSessions) forget(k sessionKey) {
	if _, ok := ls.m[k]; !ok {
		return
	}
	delete(ls.m, k)
	if ls.perWorker[k.worker]--; ls.perWorker[k.worker] <= 0 {
		delete(ls.perWorker, k.worker)
	}
}
