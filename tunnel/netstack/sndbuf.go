package netstack

import (
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

// The stack's TCP connections share one send-buffer budget
// (Options.TCPBuffer) instead of each holding that much. gVisor grows a
// connection's send buffer with its congestion window and never shrinks
// it; no loss comes back from the link while the outbound queue holds, so
// every busy connection grows to the cap: four streams held 27 MiB of
// gVisor buffers in one gateway at full load. One busy connection still
// gets the whole budget (what a long, fast path needs); n of them get
// budget/n each, never less than minSendShare.
const (
	// minSendShare is the least send buffer a connection is given: more
	// than a bandwidth-delay product inside one region.
	minSendShare = 512 << 10
	// shareEvery is how often the shares are recomputed.
	shareEvery = 200 * time.Millisecond
)

// sendShares sets each sending TCP connection's send buffer to its share
// of the budget; its state is the sizes it last set, by endpoint.
type sendShares struct {
	budget int

	mu  sync.Mutex
	set map[tcpip.Endpoint]int64
}

// sizer is what sendShares needs of a gVisor TCP endpoint.
type sizer interface {
	tcpip.Endpoint
	State() uint32
}

// share is each of n connections' send buffer under budget.
func share(budget, n int) int64 {
	if n <= 1 {
		return int64(budget)
	}
	return int64(max(budget/n, min(minSendShare, budget)))
}

// apply recomputes the shares over eps, the stack's transport endpoints.
// Only connections that can send count (established, or closed by the
// peer but still sending).
func (s *sendShares) apply(eps []stack.TransportEndpoint) {
	var sending []tcpip.Endpoint
	for _, ep := range eps {
		te, ok := ep.(sizer)
		if !ok {
			continue
		}
		if st := tcp.EndpointState(te.State()); st == tcp.StateEstablished || st == tcp.StateCloseWait {
			sending = append(sending, te)
		}
	}
	size := share(s.budget, len(sending))
	s.mu.Lock()
	defer s.mu.Unlock()
	next := make(map[tcpip.Endpoint]int64, len(sending))
	for _, ep := range sending {
		next[ep] = size
		if prev, ok := s.set[ep]; ok && prev == size {
			continue
		}
		if _, ok := s.set[ep]; !ok && len(sending) == 1 {
			// A lone connection keeps gVisor's own tuning (it grows to
			// the budget, the stack's cap) until it first shares.
			delete(next, ep)
			continue
		}
		ep.SocketOptions().SetSendBufferSize(size, true)
	}
	s.set = next
}

// shareLoop applies the shares every shareEvery until done is closed.
func (ns *Stack) shareLoop(done <-chan struct{}) {
	t := time.NewTicker(shareEvery)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ns.shares.apply(ns.s.RegisteredEndpoints())
	}
}
