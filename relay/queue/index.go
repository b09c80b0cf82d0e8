package queue

import (
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// entry is one live job (queued, leased or retrying) in memory: what the
// state machine needs to lease, fence, expire and back off it, and no
// more. The payload, result, last error and idempotency key are in the
// store only. An entry holds no pointers, so the arena it lives in costs
// the garbage collector nothing.
type entry struct {
	id       [16]byte // the job id, decoded (ids.go)
	token    [16]byte // the current or last lease's token; zero if none
	runAfter int64    // Unix nanoseconds; 0 is the zero time
	deadline int64    // lease deadline
	leasedAt int64
	timerAt  int64 // the pending timer, or 0
	leaseDur time.Duration
	seq      uint64 // ready order among jobs ready at the same time
	attempt  uint32
	maxAtt   uint32
	size     uint32 // payload bytes
	heapIdx  int32  // in its queue's ready heap, or -1
	queue    uint32 // in names
	worker   uint32 // in names: who holds (or last held) the lease; 0 none
	slot     uint32 // where it is in the arena; noSlot for a job read from the store
	state    uint8  // stateCode
	end      uint8  // leaseEndCode
	cancel   bool   // cancel requested
}

const noSlot = ^uint32(0)

// States and lease ends as the entry holds them.
var (
	allStatesList = store.States()
	leaseEnds     = []store.LeaseEnd{"", store.EndCompleted, store.EndFailed, store.EndExpired, store.EndReleased}
)

func stateCode(s store.State) uint8 {
	for i, t := range allStatesList {
		if s == t {
			return uint8(i + 1)
		}
	}
	return 0
}

func (e *entry) State() store.State {
	if e.state == 0 {
		return ""
	}
	return allStatesList[e.state-1]
}

func leaseEndCode(l store.LeaseEnd) uint8 {
	for i, t := range leaseEnds {
		if l == t {
			return uint8(i)
		}
	}
	return 0
}

func (e *entry) LeaseEnd() store.LeaseEnd { return leaseEnds[e.end] }

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func timeOf(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// names interns queue and worker names: an entry holds an index, not a
// string. Index 0 is "". Names are never forgotten; there are as many as
// queues and worker names ever seen.
type names struct {
	list []string
	idx  map[string]uint32
}

func (n *names) intern(s string) uint32 {
	if s == "" {
		return 0
	}
	if i, ok := n.idx[s]; ok {
		return i
	}
	if n.idx == nil {
		n.idx = map[string]uint32{}
		n.list = []string{""}
	}
	i := uint32(len(n.list))
	n.list = append(n.list, s)
	n.idx[s] = i
	return i
}

// lookup is s's index, or false if s was never interned.
func (n *names) lookup(s string) (uint32, bool) {
	i, ok := n.idx[s]
	return i, ok
}

func (n *names) name(i uint32) string {
	if i == 0 {
		return ""
	}
	return n.list[i]
}

// arenaChunk is how many entries one block of the arena holds.
const arenaChunk = 1 << 14

// arena holds the entries in blocks that never move, so an *entry stays
// valid while its slot is in use; freed slots are used again.
type arena struct {
	chunks [][]entry
	free   []uint32
	n      uint32 // slots ever handed out
}

func (a *arena) at(slot uint32) *entry { return &a.chunks[slot/arenaChunk][slot%arenaChunk] }

// alloc is a slot for a copy of e.
func (a *arena) alloc(e *entry) *entry {
	var slot uint32
	if n := len(a.free); n > 0 {
		slot = a.free[n-1]
		a.free = a.free[:n-1]
	} else {
		if int(a.n/arenaChunk) == len(a.chunks) {
			a.chunks = append(a.chunks, newChunk(arenaChunk))
		}
		slot = a.n
		a.n++
	}
	p := a.at(slot)
	*p = *e
	p.slot = slot
	return p
}

// reset gives every block back once no slot is in use (after a backlog
// drained), so memory shrinks to what is live again. No *entry may be
// held across it: only run calls it, under q.mu.
func (a *arena) reset() {
	for _, c := range a.chunks {
		freeChunk(c)
	}
	a.chunks, a.free, a.n = nil, nil, 0
}

// release frees e's slot. e keeps its fields until the slot is used
// again, so a caller may still read it under the same lock.
func (a *arena) release(e *entry) { a.free = append(a.free, e.slot) }

// jobOf is e's record as the store takes it: every field the entry holds,
// updated at now. The body fields (payload, key, creation time), the last
// error and the result are left for the caller to set, or for the store
// to keep.
func (q *Queue) jobOf(e *entry, now time.Time) store.Job {
	j := store.Job{
		ID:              q.idString(e.id),
		Queue:           q.names.name(e.queue),
		State:           e.State(),
		Attempt:         e.attempt,
		MaxAttempts:     e.maxAtt,
		LeaseDuration:   e.leaseDur,
		RunAfter:        timeOf(e.runAfter),
		UpdatedAt:       now,
		LeasedBy:        q.names.name(e.worker),
		LeasedAt:        timeOf(e.leasedAt),
		LeaseDeadline:   timeOf(e.deadline),
		LeaseEnd:        e.LeaseEnd(),
		CancelRequested: e.cancel,
		PayloadSize:     int(e.size),
	}
	if e.token != ([16]byte{}) {
		j.LeaseToken = append([]byte(nil), e.token[:]...)
	}
	if j.State.Terminal() {
		j.FinishedAt = now
	}
	return j
}

// entryOf is the entry for a record read from the store (not in the
// arena); false if its id is not one this relay makes.
func (q *Queue) entryOf(j *store.Job) (entry, bool) {
	id, ok := parseID(j.ID)
	e := entry{
		id:       id,
		runAfter: nanos(j.RunAfter),
		deadline: nanos(j.LeaseDeadline),
		leasedAt: nanos(j.LeasedAt),
		leaseDur: j.LeaseDuration,
		attempt:  j.Attempt,
		maxAtt:   j.MaxAttempts,
		size:     uint32(j.PayloadSize),
		heapIdx:  -1,
		queue:    q.names.intern(j.Queue),
		worker:   q.names.intern(j.LeasedBy),
		slot:     noSlot,
		state:    stateCode(j.State),
		end:      leaseEndCode(j.LeaseEnd),
		cancel:   j.CancelRequested,
	}
	copy(e.token[:], j.LeaseToken)
	return e, ok
}

// find is the live entry of job id, or nil.
func (q *Queue) find(id string) *entry {
	k, ok := parseID(id)
	if !ok {
		return nil
	}
	if slot, ok := q.byID.get(k); ok {
		return q.arena.at(slot)
	}
	return nil
}
