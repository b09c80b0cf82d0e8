package netstack

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func packets(sizes ...int) stack.PacketBufferList {
	var l stack.PacketBufferList
	for _, n := range sizes {
		l.PushBack(stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(make([]byte, n))}))
	}
	return l
}

// The outbound queue is bounded in bytes as well as packets: a queue of
// 64 KiB GSO segments must not grow to hundreds of MiB.
func TestQueueBoundedInBytes(t *testing.T) {
	const seg = 64 << 10
	e := newLinkEndpoint(4096, 3*seg, 1420, true, true)
	defer e.close()

	l := packets(seg, seg, seg, seg, seg)
	n, err := e.WritePackets(l)
	l.DecRef()
	if n != 3 || err != nil {
		t.Fatalf("queued %d, %v; want 3 of 5 segments in a 3-segment byte bound", n, err)
	}
	if got := e.dropped.Load(); got != 2 {
		t.Fatalf("dropped %d, want 2", got)
	}
	if q := e.queued.Load(); q != 3*seg {
		t.Fatalf("queued bytes %d", q)
	}
	// Full: nothing more gets in, and the stack is told so.
	l = packets(100)
	n, err = e.WritePackets(l)
	l.DecRef()
	if _, ok := err.(*tcpip.ErrNoBufferSpace); n != 0 || !ok {
		t.Fatalf("into a full queue: %d, %v", n, err)
	}
	// Taking one out makes room for one again.
	e.dequeued(<-e.out).DecRef()
	l = packets(seg, seg)
	n, _ = e.WritePackets(l)
	l.DecRef()
	if n != 1 {
		t.Fatalf("after one read: queued %d, want 1", n)
	}
	// An empty queue takes one packet larger than the bound.
	big := newLinkEndpoint(16, 1000, 1420, true, true)
	defer big.close()
	l = packets(seg)
	n, _ = big.WritePackets(l)
	l.DecRef()
	if n != 1 {
		t.Fatalf("an empty queue refused a large packet")
	}
}

// Closing the endpoint releases what was queued and zeroes the count.
func TestQueueCloseReleases(t *testing.T) {
	e := newLinkEndpoint(16, 1<<20, 1420, true, true)
	l := packets(1000, 2000)
	if n, _ := e.WritePackets(l); n != 2 {
		t.Fatalf("queued %d", n)
	}
	l.DecRef()
	e.close()
	if q := e.queued.Load(); q != 0 {
		t.Fatalf("%d bytes counted after close", q)
	}
}

// Loss recovery and congestion control are tuned: SACK on, RACK off,
// CUBIC (see tune).
func TestLossRecoveryTuned(t *testing.T) {
	ns, err := New(Options{Addresses: []netip.Addr{netip.MustParseAddr("10.9.0.1")}, MTU: 1420})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var sack tcpip.TCPSACKEnabled
	var rec tcpip.TCPRecovery
	var cc tcpip.CongestionControlOption
	for _, opt := range []tcpip.GettableTransportProtocolOption{&sack, &rec, &cc} {
		if err := ns.GVisor().TransportProtocolOption(tcp.ProtocolNumber, opt); err != nil {
			t.Fatal(err)
		}
	}
	if !bool(sack) || rec&tcpip.TCPRACKLossDetection != 0 || cc != "cubic" {
		t.Fatalf("SACK %v, recovery %b, congestion control %q", sack, rec, cc)
	}
}

// Read hands WireGuard no more than MaxInFlight packets that were not
// reported sent; Sent frees room, and a count that never comes back (packets
// WireGuard dropped) is forgiven after inFlightPatience.
func TestInFlightBudget(t *testing.T) {
	ns, err := New(Options{Addresses: []netip.Addr{netip.MustParseAddr("10.9.0.1")}, MTU: 1420, MaxInFlight: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	queue := func(k int) {
		sizes := make([]int, k)
		for i := range sizes {
			sizes[i] = 100
		}
		l := packets(sizes...)
		if n, _ := ns.ep.WritePackets(l); n != k {
			t.Fatalf("queued %d of %d", n, k)
		}
		l.DecRef()
	}
	bufs := make([][]byte, 4)
	for i := range bufs {
		bufs[i] = make([]byte, 1500)
	}
	sizes := make([]int, 4)
	queue(8)
	if n, err := ns.Read(bufs, sizes, 0); n != 4 || err != nil {
		t.Fatalf("first read: %d, %v", n, err)
	}
	// 4 in flight, bound 2: the next Read waits for Sent.
	var sent atomic.Bool
	go func() {
		time.Sleep(5 * time.Millisecond)
		sent.Store(true)
		ns.Sent(3)
	}()
	if n, _ := ns.Read(bufs, sizes, 0); n != 4 || !sent.Load() {
		t.Fatalf("second read: %d packets, before Sent: %v", n, !sent.Load())
	}
	if got := ns.out.forgiven.Load(); got != 0 {
		t.Fatalf("forgiven %d times with Sent in time", got)
	}
	// Nothing reported sent: after the patience the count starts again.
	queue(1)
	start := time.Now()
	if n, _ := ns.Read(bufs, sizes, 0); n != 1 {
		t.Fatalf("third read: %d", n)
	}
	if waited := time.Since(start); waited < inFlightPatience || ns.out.forgiven.Load() != 1 || ns.Stats().OutBudgetResets != 1 {
		t.Fatalf("waited %v, forgiven %d times", waited, ns.out.forgiven.Load())
	}
	// Sends beyond what was read (handshakes, keepalives) do not bank credit.
	ns.Sent(100)
	if got := ns.out.held.Load(); got != 0 {
		t.Fatalf("in flight %d after extra sends", got)
	}
}

// AwaitInbound holds the bind's receive back while WireGuard holds
// MaxInbound received packets the stack has not been written; Write frees
// them, and a count that never comes back is forgiven after
// inFlightPatience.
func TestInboundBudget(t *testing.T) {
	ns, err := New(Options{Addresses: []netip.Addr{netip.MustParseAddr("10.9.0.1")}, MTU: 1420, MaxInbound: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	var timer *time.Timer
	ns.Received(3)
	start := time.Now()
	ns.AwaitInbound(&timer) // below the bound: no wait
	if waited := time.Since(start); waited >= inFlightPatience {
		t.Fatalf("waited %v below the bound", waited)
	}
	ns.Received(2)
	var written atomic.Bool
	go func() {
		time.Sleep(5 * time.Millisecond)
		written.Store(true)
		// Not IP: filtered, but handed over all the same.
		_, _ = ns.Write([][]byte{{0}, {0}}, 0)
	}()
	ns.AwaitInbound(&timer)
	if !written.Load() || ns.in.forgiven.Load() != 0 {
		t.Fatalf("returned before Write: %v, forgiven %d", !written.Load(), ns.in.forgiven.Load())
	}
	if got := ns.in.held.Load(); got != 3 {
		t.Fatalf("%d held after 5 received and 2 written", got)
	}
	ns.Received(1)
	start = time.Now()
	ns.AwaitInbound(&timer)
	if waited := time.Since(start); waited < inFlightPatience || ns.in.forgiven.Load() != 1 || ns.Stats().InBudgetResets != 1 || ns.in.held.Load() != 0 {
		t.Fatalf("waited %v, forgiven %d, held %d", waited, ns.in.forgiven.Load(), ns.in.held.Load())
	}
}
