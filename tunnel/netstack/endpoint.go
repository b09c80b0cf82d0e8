package netstack

import (
	"sync"
	"sync/atomic"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// linkEndpoint is the stack's side of the TUN: packets the stack sends wait
// in out until wireguard-go reads them; packets wireguard-go writes are
// delivered to the dispatcher.
type linkEndpoint struct {
	mtu atomic.Uint32
	gso bool // the stack may hand us TCP segments of up to 64 KiB
	// rxOffload tells the stack not to check inbound checksums: either
	// WireGuard's authentication stands for them, or GRO checked them.
	rxOffload bool

	mu         sync.RWMutex // guards dispatcher and closed
	dispatcher stack.NetworkDispatcher
	closed     bool

	out chan *stack.PacketBuffer
	// queued is the bytes waiting in out, bounded by maxBytes: a packet
	// count alone lets 64 KiB GSO segments pile up to hundreds of MiB.
	queued   atomic.Int64
	maxBytes int64
	dropped  atomic.Uint64 // outbound packets dropped because out was full
}

var (
	_ stack.LinkEndpoint = (*linkEndpoint)(nil)
	_ stack.GSOEndpoint  = (*linkEndpoint)(nil)
)

func newLinkEndpoint(queueLen int, queueBytes int64, mtu uint32, gso, rxOffload bool) *linkEndpoint {
	e := &linkEndpoint{out: make(chan *stack.PacketBuffer, queueLen), maxBytes: queueBytes, gso: gso, rxOffload: rxOffload}
	e.mtu.Store(mtu)
	return e
}

// WritePackets queues the stack's outbound packets. When the queue is full,
// in packets or in bytes, the rest are dropped and counted; TCP recovers
// them (SACK and RACK find the hole within a round trip), UDP loses them,
// as on a real link. One packet is always let into an empty queue, however
// large.
func (e *linkEndpoint) WritePackets(pkts stack.PacketBufferList) (int, tcpip.Error) {
	e.mu.RLock()
	defer e.mu.RUnlock()
	if e.closed {
		return 0, &tcpip.ErrClosedForSend{}
	}
	n := 0
	for _, pkt := range pkts.AsSlice() {
		size := int64(pkt.Size())
		if q := e.queued.Add(size); q > e.maxBytes && q != size {
			e.queued.Add(-size)
			return e.drop(pkts.Len(), n)
		}
		select {
		case e.out <- pkt.IncRef():
			n++
		default:
			e.queued.Add(-size)
			pkt.DecRef()
			return e.drop(pkts.Len(), n)
		}
	}
	return n, nil
}

// drop counts the packets of a batch of total that were not queued.
func (e *linkEndpoint) drop(total, queued int) (int, tcpip.Error) {
	e.dropped.Add(uint64(total - queued))
	if queued == 0 {
		return 0, &tcpip.ErrNoBufferSpace{}
	}
	return queued, nil
}

// dequeued accounts for a packet taken out of the queue.
func (e *linkEndpoint) dequeued(pkt *stack.PacketBuffer) *stack.PacketBuffer {
	e.queued.Add(-int64(pkt.Size()))
	return pkt
}

func (e *linkEndpoint) dispatcherOrNil() stack.NetworkDispatcher {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher
}

func (e *linkEndpoint) close() {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return
	}
	e.closed = true
	e.dispatcher = nil
	close(e.out)
	e.mu.Unlock()
	for pkt := range e.out {
		e.dequeued(pkt).DecRef()
	}
}

func (e *linkEndpoint) MTU() uint32                      { return e.mtu.Load() }
func (e *linkEndpoint) SetMTU(mtu uint32)                { e.mtu.Store(mtu) }
func (e *linkEndpoint) MaxHeaderLength() uint16          { return 0 }
func (e *linkEndpoint) LinkAddress() tcpip.LinkAddress   { return "" }
func (e *linkEndpoint) SetLinkAddress(tcpip.LinkAddress) {}

// Capabilities implements stack.LinkEndpoint. The NIC overwrites each
// inbound packet's RXChecksumValidated from these, so the offload must be
// claimed here for GRO's merged packets (whose checksums are stale) to pass.
func (e *linkEndpoint) Capabilities() stack.LinkEndpointCapabilities {
	if e.rxOffload {
		return stack.CapabilityRXChecksumOffload
	}
	return 0
}

// GSOMaxSize implements stack.GSOEndpoint.
func (e *linkEndpoint) GSOMaxSize() uint32 { return gsoMaxSize }

// SupportedGSO implements stack.GSOEndpoint: segments are cut by us, as a
// NIC with TSO would.
func (e *linkEndpoint) SupportedGSO() stack.SupportedGSO {
	if e.gso {
		return stack.HostGSOSupported
	}
	return stack.GSONotSupported
}

func (e *linkEndpoint) Attach(d stack.NetworkDispatcher) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.closed {
		e.dispatcher = d
	}
}

func (e *linkEndpoint) IsAttached() bool {
	e.mu.RLock()
	defer e.mu.RUnlock()
	return e.dispatcher != nil
}

func (e *linkEndpoint) Wait()                                   {}
func (e *linkEndpoint) ARPHardwareType() header.ARPHardwareType { return header.ARPHardwareNone }
func (e *linkEndpoint) AddHeader(*stack.PacketBuffer)           {}
func (e *linkEndpoint) ParseHeader(*stack.PacketBuffer) bool    { return true }
func (e *linkEndpoint) Close()                                  {}
func (e *linkEndpoint) SetOnCloseAction(func())                 {}
