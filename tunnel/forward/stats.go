package forward

import (
	"fmt"
	"sync/atomic"
)

// Drop reasons at the rule level.
type Drop uint8

// Reasons a rule drops a flow or a datagram.
const (
	DropConnLimit    Drop = iota // TCP: too many connections
	DropSessionLimit             // UDP: too many sessions
	DropOversize                 // UDP: datagram larger than the tunnel carries unfragmented
	DropDialFailed               // the other side could not be reached
	DropPending                  // UDP: datagrams queued while dialling overflowed
	DropWriteFailed              // the other side refused a datagram
	DropSourceLimit              // UDP: too many sessions from one source address
	DropEvicted                  // UDP: a session with no reply evicted for a new one
	numDrops
)

var dropNames = [...]string{
	DropConnLimit:    "conn_limit",
	DropSessionLimit: "session_limit",
	DropOversize:     "oversize",
	DropDialFailed:   "dial_failed",
	DropPending:      "dial_pending",
	DropWriteFailed:  "write_failed",
	DropSourceLimit:  "source_limit",
	DropEvicted:      "evicted_unreplied",
}

func (d Drop) String() string {
	if int(d) < len(dropNames) {
		return dropNames[d]
	}
	return fmt.Sprintf("drop(%d)", d)
}

// Drops lists every drop reason.
func Drops() []Drop {
	ds := make([]Drop, numDrops)
	for i := range ds {
		ds[i] = Drop(i)
	}
	return ds
}

// Stats are one rule's counters. The zero value is ready.
type Stats struct {
	active    atomic.Int64
	flows     atomic.Uint64
	bytesUp   atomic.Uint64 // from the listening side to the dialled side
	bytesDown atomic.Uint64
	drops     [numDrops]atomic.Uint64
}

// Snapshot is a copy of Stats at one moment.
type Snapshot struct {
	Active    int64             `json:"active_flows"`
	Flows     uint64            `json:"flows_total"`
	BytesUp   uint64            `json:"bytes_up"`
	BytesDown uint64            `json:"bytes_down"`
	Drops     map[string]uint64 `json:"drops"`
}

// Snapshot copies the counters.
func (s *Stats) Snapshot() Snapshot {
	snap := Snapshot{
		Active:    s.active.Load(),
		Flows:     s.flows.Load(),
		BytesUp:   s.bytesUp.Load(),
		BytesDown: s.bytesDown.Load(),
		Drops:     map[string]uint64{},
	}
	for i := range s.drops {
		snap.Drops[Drop(i).String()] = s.drops[i].Load()
	}
	return snap
}

// Dropped returns one drop counter.
func (s *Stats) Dropped(d Drop) uint64 { return s.drops[d].Load() }

func (s *Stats) drop(d Drop) { s.drops[d].Add(1) }

func (s *Stats) opened() {
	s.active.Add(1)
	s.flows.Add(1)
}

func (s *Stats) closed() { s.active.Add(-1) }
