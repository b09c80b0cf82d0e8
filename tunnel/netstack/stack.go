package netstack

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/tun"
	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/stack/gro"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/udp"
)

const nicID = 1

// Defaults.
const (
	DefaultQueueLen = 4096
	// DefaultQueueBytes bounds the outbound queue in bytes. It holds one
	// TCP socket's whole send buffer and 2 MiB more: gVisor has no
	// backpressure from the link (nothing like Linux's TCP small queues),
	// so a flow whose window outgrew a smaller queue lost whole 64 KiB GSO
	// segments, 45 packets at a time, and recovering such bursts took
	// retransmit timeouts: with 2 MiB, 5 of 120 two-second runs in the
	// production shape dropped, two lost half their throughput and one
	// more of 120 stalled for the rest of its run (docs/bench.md). The
	// queued packets share their payload with the send buffer, so the
	// bound costs little memory of its own.
	DefaultQueueBytes = DefaultTCPBuffer + 2<<20
	DefaultBatchSize  = 64 // as many as the bind moves per system call
	// DefaultMaxInFlight bounds packets handed to WireGuard and not yet
	// sent: wireguard-go gives each a 64 KiB buffer, so 128 of them hold
	// 8 MiB, two batches.
	DefaultMaxInFlight = 128
	// DefaultMaxInbound bounds received packets WireGuard holds on their
	// way to the stack (decryption, its per-peer queue): unbounded, a
	// gateway short of CPU held 550-750 of them, 35-47 MiB.
	DefaultMaxInbound = 128
	// inFlightPatience is how long Read waits for sends before assuming
	// the packets it counts were dropped inside WireGuard (no handshake,
	// a full queue) and will never be reported sent.
	inFlightPatience = 20 * time.Millisecond
	// DefaultUDPBuffer is the receive buffer of the stack's UDP sockets: a
	// burst of QUIC packets must not overflow gVisor's 212 KiB default.
	DefaultUDPBuffer = 4 << 20
	// DefaultTCPBuffer bounds each TCP socket's receive buffer (gVisor
	// auto-tunes within it) and is the send-buffer budget the stack's
	// sending connections share (sndbuf.go).
	DefaultTCPBuffer = 8 << 20
)

// Options configure a Stack.
type Options struct {
	// Addresses are the stack's own (tunnel) addresses.
	Addresses []netip.Addr
	// Routes are the only destinations the stack can send to: the peers'
	// tunnel prefixes. A dial to anything else fails with "no route".
	Routes []netip.Prefix
	// MTU of the tunnel.
	MTU int
	// Filter, if set, is asked about every inbound packet; false drops it.
	Filter func(packet []byte) bool
	// QueueLen is the depth of the outbound queue, in packets.
	QueueLen int
	// QueueBytes bounds the outbound queue in bytes.
	QueueBytes int64
	// BatchSize is how many packets Read hands wireguard-go at once.
	BatchSize int
	// MaxInFlight bounds the packets Read has handed WireGuard that have
	// not been reported sent (Stack.Sent); negative means no bound. It
	// bounds wireguard-go's buffers, 64 KiB for each packet.
	MaxInFlight int
	// MaxInbound bounds the packets WireGuard has received (reported with
	// Stack.Received) and not yet written to the stack: while it is
	// reached, Stack.AwaitInbound holds the bind's receive back and the
	// kernel's socket buffer waits instead. Negative means no bound.
	MaxInbound int
	// UDPBuffer and TCPBuffer size socket buffers; zero picks the defaults.
	UDPBuffer int
	TCPBuffer int

	// The levers below are on by default; benchmarks turn them off one at
	// a time to measure each.

	// NoGSO makes the stack cut TCP into MTU-sized packets itself rather
	// than hand us 64 KiB segments to cut.
	NoGSO bool
	// NoGRO delivers inbound TCP packets one by one rather than
	// coalescing a batch's consecutive segments first.
	NoGRO bool
	// VerifyChecksums checks inbound checksums (in GRO, or in the stack
	// without it). WireGuard has already authenticated every byte, so by
	// default nothing does.
	VerifyChecksums bool
}

// Stats count what crossed the stack's link.
type Stats struct {
	PacketsIn, PacketsOut uint64
	BytesIn, BytesOut     uint64
	// Filtered counts inbound packets the filter dropped.
	Filtered uint64
	// QueueDrops counts outbound packets dropped because WireGuard did not
	// read them fast enough.
	QueueDrops uint64
	// QueuedBytes is what the outbound queue holds now.
	QueuedBytes int64
	// OutBudgetResets and InBudgetResets count the times a side stopped
	// waiting for WireGuard to give back packet buffers (after
	// inFlightPatience) and started its count again: packets WireGuard
	// dropped on the way (no session yet, a full queue).
	OutBudgetResets, InBudgetResets uint64
}

// Stack is a gVisor stack that is also the wireguard-go TUN device carrying
// its packets. Close closes both.
type Stack struct {
	s      *stack.Stack
	ep     *linkEndpoint
	mtu    int
	batch  int
	filter func([]byte) bool
	events chan tun.Event

	addrs    []netip.Addr
	routesMu sync.RWMutex
	routes   []netip.Prefix
	udp      udpMux
	ipID     atomic.Uint32

	gro     bool
	verify  bool
	groPool sync.Pool // *gro.GRO, one per concurrent Write
	scratch []byte    // Read's copy of a GSO segment; Read has one caller
	pending *stack.PacketBuffer

	// out: packets Read handed WireGuard minus those Sent. in: packets
	// WireGuard received (Received) minus those it wrote to the stack.
	out, in     *budget
	budgetTimer *time.Timer // Read's; Read has one caller

	shares    sendShares    // the TCP send-buffer budget's shares
	done      chan struct{} // closed by Close: ends shareLoop
	closeOnce sync.Once

	packetsIn, packetsOut atomic.Uint64
	bytesIn, bytesOut     atomic.Uint64
	filtered              atomic.Uint64
}

var _ tun.Device = (*Stack)(nil)

// New builds a stack.
func New(opts Options) (*Stack, error) {
	if opts.MTU < 1280 || opts.MTU > 65535 {
		return nil, fmt.Errorf("creating netstack: MTU %d out of range", opts.MTU)
	}
	if len(opts.Addresses) == 0 {
		return nil, errors.New("creating netstack: no addresses")
	}
	if opts.QueueLen <= 0 {
		opts.QueueLen = DefaultQueueLen
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.MaxInbound == 0 {
		opts.MaxInbound = DefaultMaxInbound
	}
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = DefaultQueueBytes
	}
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	if opts.UDPBuffer <= 0 {
		opts.UDPBuffer = DefaultUDPBuffer
	}
	if opts.TCPBuffer <= 0 {
		opts.TCPBuffer = DefaultTCPBuffer
	}
	s := stack.New(stack.Options{
		NetworkProtocols:   []stack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol},
		TransportProtocols: []stack.TransportProtocolFactory{tcp.NewProtocol, udp.NewProtocol},
	})
	ns := &Stack{
		s:      s,
		ep:     newLinkEndpoint(opts.QueueLen, opts.QueueBytes, uint32(opts.MTU), !opts.NoGSO, !opts.NoGRO || !opts.VerifyChecksums),
		mtu:    opts.MTU,
		batch:  opts.BatchSize,
		filter: opts.Filter,
		events: make(chan tun.Event, 4),
		gro:    !opts.NoGRO,
		verify: opts.VerifyChecksums,
		udp:    udpMux{bound: map[netip.AddrPort]*UDPConn{}},

		out: newBudget(max(opts.MaxInFlight, 0)),
		in:  newBudget(max(opts.MaxInbound, 0)),

		shares: sendShares{budget: opts.TCPBuffer},
		done:   make(chan struct{}),
	}
	for _, a := range opts.Addresses {
		ns.addrs = append(ns.addrs, a.Unmap())
	}
	if err := ns.tune(opts); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.CreateNIC(nicID, ns.ep); err != nil {
		s.Close()
		return nil, fmt.Errorf("creating netstack NIC: %v", err)
	}
	for _, a := range opts.Addresses {
		pa := tcpip.ProtocolAddress{
			Protocol:          protoOf(a),
			AddressWithPrefix: tcpip.AddrFromSlice(a.Unmap().AsSlice()).WithPrefix(),
		}
		if err := s.AddProtocolAddress(nicID, pa, stack.AddressProperties{}); err != nil {
			s.Close()
			return nil, fmt.Errorf("adding netstack address %s: %v", a, err)
		}
	}
	ns.SetRoutes(opts.Routes)
	go ns.shareLoop(ns.done)
	ns.events <- tun.EventUp
	return ns, nil
}

func (ns *Stack) tune(opts Options) error {
	sack := tcpip.TCPSACKEnabled(true)
	if err := ns.s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); err != nil {
		return fmt.Errorf("enabling TCP SACK: %v", err)
	}
	// Loss recovery: SACK-based (RFC 6675: three duplicate ACKs or SACKed
	// segments mark a hole lost), not RACK. With this gVisor's RACK a
	// sender towards a peer that drops bursts (Debian's wireguard-go on a
	// 208 KiB socket buffer) stalled in 1 of 5 runs: after a timeout it
	// re-entered recovery with an ssthresh of 2 while still counting
	// ~300 segments in flight that the receiver had dropped, so it sent
	// one segment per 200 ms timeout for the rest of the run (seen with
	// gVisor's TCP probe). Classic SACK recovery, 20 runs each way in one
	// run: 3 stalls against 8 under a load average of 24, 0 in 40 on a
	// quieter machine (docs/bench.md).
	// gVisor's 200 ms floor for the timeout stays: 20 ms made flows
	// across a lossy, delayed link (1 %, 5 ms) end in resets.
	recovery := tcpip.TCPRecovery(0)
	if err := ns.s.SetTransportProtocolOption(tcp.ProtocolNumber, &recovery); err != nil {
		return fmt.Errorf("setting TCP loss recovery: %v", err)
	}
	// CUBIC, as Linux, not gVisor's default of Reno. Reno's slow start
	// runs until a loss: towards a peer that reads slower than we send
	// (Debian's wireguard-go on a 208 KiB socket buffer) its doubling
	// bursts overflowed that buffer, the whole tail of the flight was lost
	// with nothing after it to SACK, and only a retransmission timeout
	// recovered it, into another slow start: a timeout every 200 ms, 3-8
	// of 20 one-stream runs under 10 MB/s. CUBIC's HyStart leaves slow
	// start when the ACKs show the queue building, before it overflows:
	// 0 of 20 such runs, every one at 28 MB/s or more (docs/bench.md).
	cc := tcpip.CongestionControlOption("cubic")
	if err := ns.s.SetTransportProtocolOption(tcp.ProtocolNumber, &cc); err != nil {
		return fmt.Errorf("setting TCP congestion control: %v", err)
	}
	rcv := tcpip.TCPReceiveBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultReceiveBufferSize, Max: opts.TCPBuffer}
	if err := ns.s.SetTransportProtocolOption(tcp.ProtocolNumber, &rcv); err != nil {
		return fmt.Errorf("setting TCP receive buffer: %v", err)
	}
	snd := tcpip.TCPSendBufferSizeRangeOption{Min: tcp.MinBufferSize, Default: tcp.DefaultSendBufferSize, Max: opts.TCPBuffer}
	if err := ns.s.SetTransportProtocolOption(tcp.ProtocolNumber, &snd); err != nil {
		return fmt.Errorf("setting TCP send buffer: %v", err)
	}
	// gVisor sends no ICMP errors (port or protocol unreachable, parameter
	// problems) into the tunnel: whatever the policy lets through and no
	// socket takes is dropped in silence, as the policy promises. The two
	// types gVisor never rate-limits are sent only when forwarding, which
	// is off.
	ns.s.SetICMPLimit(0)
	ns.s.SetICMPBurst(0)
	ubuf := tcpip.ReceiveBufferSizeOption{Min: 4 << 10, Default: opts.UDPBuffer, Max: opts.UDPBuffer}
	if err := ns.s.SetOption(ubuf); err != nil {
		return fmt.Errorf("setting UDP receive buffer: %v", err)
	}
	return nil
}

// SetRoutes replaces the stack's routes: the only prefixes it can reach.
func (ns *Stack) SetRoutes(prefixes []netip.Prefix) {
	ns.routesMu.Lock()
	ns.routes = append([]netip.Prefix(nil), prefixes...)
	ns.routesMu.Unlock()
	var rt []tcpip.Route
	for _, p := range prefixes {
		p = p.Masked()
		sub, err := tcpip.NewSubnet(
			tcpip.AddrFromSlice(p.Addr().AsSlice()),
			tcpip.MaskFromBytes(netMask(p)),
		)
		if err != nil {
			continue
		}
		rt = append(rt, tcpip.Route{Destination: sub, NIC: nicID})
	}
	ns.s.SetRouteTable(rt)
}

func netMask(p netip.Prefix) []byte {
	n := p.Addr().BitLen() / 8
	m := make([]byte, n)
	bits := p.Bits()
	for i := range m {
		switch {
		case bits >= 8:
			m[i] = 0xff
			bits -= 8
		case bits > 0:
			m[i] = byte(0xff << (8 - bits))
			bits = 0
		}
	}
	return m
}

func protoOf(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Unmap().Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// Stats returns the link counters.
func (ns *Stack) Stats() Stats {
	return Stats{
		PacketsIn:  ns.packetsIn.Load(),
		PacketsOut: ns.packetsOut.Load(),
		BytesIn:    ns.bytesIn.Load(),
		BytesOut:   ns.bytesOut.Load(),
		Filtered:   ns.filtered.Load(),
		QueueDrops: ns.ep.dropped.Load(),

		QueuedBytes:     ns.ep.queued.Load(),
		OutBudgetResets: ns.out.forgiven.Load(),
		InBudgetResets:  ns.in.forgiven.Load(),
	}
}

// GVisor exposes the underlying stack for tuning and tests.
func (ns *Stack) GVisor() *stack.Stack { return ns.s }

// Read implements tun.Device: it blocks for one outbound packet, then takes
// as many more as are queued, up to the batch size. A GSO segment becomes
// as many MTU-sized packets as it holds. wireguard-go calls Read from one
// goroutine only.
func (ns *Stack) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	ns.awaitBudget()
	pkt := ns.pending
	ns.pending = nil
	if pkt == nil {
		var ok bool
		pkt, ok = <-ns.ep.out
		if !ok {
			return 0, os.ErrClosed
		}
		ns.ep.dequeued(pkt)
	}
	limit := min(len(bufs), ns.batch)
	n := 0
	for {
		wrote, keep := ns.emit(pkt, bufs[n:limit], sizes[n:limit], offset)
		if keep {
			// Not enough room left in this batch: first in the next.
			ns.pending = pkt
			break
		}
		pkt.DecRef()
		n += wrote
		if n >= limit {
			break
		}
		if pkt = ns.poll(); pkt == nil {
			break
		}
	}
	for _, sz := range sizes[:n] {
		ns.bytesOut.Add(uint64(sz))
	}
	ns.packetsOut.Add(uint64(n))
	ns.out.take(n)
	return n, nil
}

// Sent tells the stack that WireGuard sent n datagrams (the bind's Send):
// their buffers are free, and Read may hand it as many more packets.
// Handshakes and keepalives count too; the count does not go below zero.
func (ns *Stack) Sent(n int) { ns.out.give(n) }

// awaitBudget waits while WireGuard holds MaxInFlight packets, at most
// inFlightPatience: packets it dropped are never reported sent, so after
// that the count starts again from zero.
func (ns *Stack) awaitBudget() { ns.out.wait(&ns.budgetTimer) }

// Received tells the stack that the bind handed WireGuard n datagrams;
// Write gives them back as it is handed the packets they carried.
func (ns *Stack) Received(n int) { ns.in.take(n) }

// AwaitInbound waits while WireGuard holds MaxInbound received packets
// not yet written to the stack, at most inFlightPatience (handshakes and
// keepalives are never written on). timer is the caller's own: each of
// the bind's receive functions keeps one.
func (ns *Stack) AwaitInbound(timer **time.Timer) { ns.in.wait(timer) }

// emit writes one queued packet into bufs: as it is, or cut into segments.
// keep reports that it needs more buffers than bufs has.
func (ns *Stack) emit(pkt *stack.PacketBuffer, bufs [][]byte, sizes []int, offset int) (n int, keep bool) {
	if len(bufs) == 0 {
		return 0, true
	}
	gso := pkt.GSOOptions
	if gso.Type != stack.GSOTCPv4 && gso.Type != stack.GSOTCPv6 {
		if sz := copyPacket(bufs[0][offset:], pkt); sz > 0 {
			sizes[0] = sz
			return 1, false
		}
		return 0, false // larger than a buffer: dropped
	}
	size := pkt.Size()
	if cap(ns.scratch) < size {
		ns.scratch = make([]byte, gsoMaxSize+header.IPv6MinimumSize+header.TCPHeaderMaximumSize)
	}
	buf := ns.scratch[:size]
	off := 0
	for _, s := range pkt.AsSlices() {
		off += copy(buf[off:], s)
	}
	n, err := segment(buf, gso, bufs, sizes, offset)
	if errors.Is(err, errGSOTooMany) {
		return 0, true
	}
	if err != nil {
		return 0, false // malformed: dropped, TCP will resend
	}
	return n, false
}

// poll takes a queued packet without blocking, or returns nil.
func (ns *Stack) poll() *stack.PacketBuffer {
	select {
	case pkt, ok := <-ns.ep.out:
		if !ok {
			return nil
		}
		return ns.ep.dequeued(pkt)
	default:
		return nil
	}
}

func copyPacket(dst []byte, pkt *stack.PacketBuffer) int {
	if pkt.Size() > len(dst) {
		return 0
	}
	n := 0
	for _, s := range pkt.AsSlices() {
		n += copy(dst[n:], s)
	}
	return n
}

// Write implements tun.Device: each packet that passes the filter is
// delivered to the stack, consecutive TCP segments of a flow coalesced
// first (GRO). Packets the filter drops are counted, not errors.
// wireguard-go may call Write from several goroutines at once.
func (ns *Stack) Write(bufs [][]byte, offset int) (int, error) {
	defer ns.in.give(len(bufs))
	d := ns.ep.dispatcherOrNil()
	if d == nil {
		return 0, os.ErrClosed
	}
	var g *gro.GRO
	if ns.gro {
		g, _ = ns.groPool.Get().(*gro.GRO)
		if g == nil {
			g = new(gro.GRO)
			g.Init(true)
		}
		g.Dispatcher = d
	}
	for _, b := range bufs {
		pkt := b[offset:]
		if len(pkt) == 0 {
			continue
		}
		if ns.filter != nil && !ns.filter(pkt) {
			ns.filtered.Add(1)
			continue
		}
		ns.packetsIn.Add(1)
		ns.bytesIn.Add(uint64(len(pkt)))
		if ns.deliverUDP(pkt) {
			continue
		}
		var proto tcpip.NetworkProtocolNumber
		switch pkt[0] >> 4 {
		case 4:
			proto = header.IPv4ProtocolNumber
		case 6:
			proto = header.IPv6ProtocolNumber
		default:
			ns.filtered.Add(1)
			continue
		}
		pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
		pb.NetworkProtocolNumber = proto
		// Without verification WireGuard's authentication stands for the
		// checksums; with it, GRO checks each packet before merging, or the
		// stack checks it when GRO is off.
		pb.RXChecksumValidated = !ns.verify
		if g != nil {
			g.Enqueue(pb)
		} else {
			d.DeliverNetworkPacket(proto, pb)
		}
		pb.DecRef()
	}
	if g != nil {
		g.Flush()
		g.Dispatcher = nil
		ns.groPool.Put(g)
	}
	return len(bufs), nil
}

// MTU implements tun.Device.
func (ns *Stack) MTU() (int, error) { return ns.mtu, nil }

// Name implements tun.Device.
func (ns *Stack) Name() (string, error) { return "netstack", nil }

// File implements tun.Device; there is no file.
func (ns *Stack) File() *os.File { return nil }

// Events implements tun.Device.
func (ns *Stack) Events() <-chan tun.Event { return ns.events }

// BatchSize implements tun.Device.
func (ns *Stack) BatchSize() int { return ns.batch }

// Close implements tun.Device: it closes the stack and every socket on it.
func (ns *Stack) Close() error {
	ns.closeOnce.Do(func() {
		close(ns.done)
		ns.ep.close()
		ns.s.RemoveNIC(nicID)
		ns.s.Close()
		ns.s.Wait()
		close(ns.events)
	})
	return nil
}
