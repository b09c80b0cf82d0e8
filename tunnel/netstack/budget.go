package netstack

import (
	"sync/atomic"
	"time"
)

// budget bounds the packets wireguard-go holds between two points of the
// tunnel: each holds one of its 64 KiB buffers. Packets are counted when
// handed over (take) and when they come back (give); wait blocks the
// side that hands them over while the count is at the bound. Packets
// wireguard-go drops on the way (no session yet, a full queue, a
// keepalive that is never written on) never come back, so wait gives up
// after inFlightPatience and starts the count again from zero.
type budget struct {
	max      int64 // zero: no bound
	held     atomic.Int64
	freed    chan struct{} // poked by give
	forgiven atomic.Uint64 // times wait gave up and reset the count
}

func newBudget(max int) *budget {
	return &budget{max: int64(max), freed: make(chan struct{}, 1)}
}

func (b *budget) take(n int) {
	if b.max > 0 {
		b.held.Add(int64(n))
	}
}

// give returns n packets; extra ones (handshakes, keepalives) bank no
// credit: the count does not go below zero.
func (b *budget) give(n int) {
	if b.max <= 0 {
		return
	}
	if b.held.Add(-int64(n)) < 0 {
		b.held.Store(0)
	}
	select {
	case b.freed <- struct{}{}:
	default:
	}
}

// wait blocks while the bound is reached, at most inFlightPatience.
// *timer is the caller's own, reused from call to call.
func (b *budget) wait(timer **time.Timer) {
	if b.max <= 0 || b.held.Load() < b.max {
		return
	}
	if *timer == nil {
		*timer = time.NewTimer(inFlightPatience)
	} else {
		(*timer).Reset(inFlightPatience)
	}
	defer (*timer).Stop()
	for b.held.Load() >= b.max {
		select {
		case <-b.freed:
		case <-(*timer).C:
			b.held.Store(0)
			b.forgiven.Add(1)
			return
		}
	}
}
