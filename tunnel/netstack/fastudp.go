package netstack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// The UDP fast path. QUIC is UDP, and each of its datagrams would
// otherwise cross gVisor's UDP layer, a socket queue and two goroutine
// hand-offs. Here UDP sockets live beside the stack: Write hands an
// inbound datagram for a bound port straight to its socket, and a send
// builds the IP and UDP headers itself and queues the packet for
// WireGuard. The policy still sees every packet first.

// udpQueueLen bounds datagrams waiting in one socket, like a socket's
// receive buffer; more are dropped and counted. 512 full-size datagrams
// are 700 KiB; the queue's slots are allocated with the socket, ~28 KiB
// each, and a forward rule's gateway has one socket per flow.
const udpQueueLen = 512

// errMsgSize is what quic-go expects for a datagram that does not fit: it
// is not fatal to a connection, unlike other send errors.
var errMsgSize = &net.OpError{Op: "write", Net: "udp", Err: os.NewSyscallError("sendto", syscall.EMSGSIZE)}

type udpMux struct {
	mu    sync.RWMutex
	bound map[netip.AddrPort]*UDPConn
	next  uint16 // next ephemeral port to try
	// Dropped counts datagrams for a socket whose queue was full.
	dropped atomic.Uint64
	// Malformed counts datagrams for a socket's port that were fragments
	// or whose UDP length disagreed with the IP header's.
	malformed atomic.Uint64
}

func (m *udpMux) lookup(ap netip.AddrPort) *UDPConn {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.bound[ap]
}

// deliverUDP hands an inbound UDP packet to a fast-path socket. It reports
// false when no socket holds the destination (gVisor then sees it). A
// packet for a fast-path port is never passed on: if it is malformed (a
// fragment, a length that disagrees with the datagram) it is dropped and
// counted, so gVisor cannot answer it with an ICMP error.
func (ns *Stack) deliverUDP(pkt []byte) bool {
	var src, dst netip.AddrPort
	var udp []byte // the UDP header and payload, as the IP header bounds them
	ok := true
	switch pkt[0] >> 4 {
	case 4:
		if len(pkt) < header.IPv4MinimumSize {
			return false
		}
		ip := header.IPv4(pkt)
		hl := int(ip.HeaderLength())
		if ip.Protocol() != uint8(header.UDPProtocolNumber) || hl < header.IPv4MinimumSize ||
			int(ip.TotalLength()) > len(pkt) || int(ip.TotalLength()) < hl+header.UDPMinimumSize {
			return false
		}
		ok = !ip.More() && ip.FragmentOffset() == 0
		udp = pkt[hl:ip.TotalLength()]
		src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[12:16])), header.UDP(udp).SourcePort())
		dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte(pkt[16:20])), header.UDP(udp).DestinationPort())
	case 6:
		if len(pkt) < header.IPv6MinimumSize+header.UDPMinimumSize {
			return false
		}
		ip := header.IPv6(pkt)
		end := header.IPv6MinimumSize + int(ip.PayloadLength())
		if ip.NextHeader() != uint8(header.UDPProtocolNumber) || end > len(pkt) || end < header.IPv6MinimumSize+header.UDPMinimumSize {
			return false
		}
		udp = pkt[header.IPv6MinimumSize:end]
		src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(pkt[8:24])), header.UDP(udp).SourcePort())
		dst = netip.AddrPortFrom(netip.AddrFrom16([16]byte(pkt[24:40])), header.UDP(udp).DestinationPort())
	default:
		return false
	}
	c := ns.udp.lookup(dst)
	if c == nil {
		return false
	}
	if !ok || int(header.UDP(udp).Length()) != len(udp) {
		ns.udp.malformed.Add(1)
		return true
	}
	if c.remote.IsValid() && c.remote != src {
		// A connected socket hears only its peer; nothing else may use
		// its port.
		return true
	}
	payload := udp[header.UDPMinimumSize:]
	d := datagram{from: src, b: append(make([]byte, 0, len(payload)), payload...)}
	select {
	case c.rx <- d:
	default:
		ns.udp.dropped.Add(1)
	}
	return true
}

type datagram struct {
	from netip.AddrPort
	b    []byte
}

// UDPConn is a fast-path UDP socket on one of the stack's addresses. It is
// a net.PacketConn and, when dialled, a net.Conn.
type UDPConn struct {
	ns     *Stack
	local  netip.AddrPort
	remote netip.AddrPort // valid when connected
	rx     chan datagram

	closeOnce sync.Once
	closed    chan struct{}
	rdl, wdl  deadline
}

// ListenUDPFast opens a fast-path UDP socket on one of the stack's
// addresses. Port 0 picks a free one.
func (ns *Stack) ListenUDPFast(at netip.AddrPort) (*UDPConn, error) {
	return ns.bindUDP(at, netip.AddrPort{})
}

// DialUDPFast opens a fast-path UDP socket connected to a peer's address
// from an ephemeral port of the stack's address of the same family.
func (ns *Stack) DialUDPFast(to netip.AddrPort) (*UDPConn, error) {
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	var local netip.Addr
	for _, a := range ns.addrs {
		if a.Is4() == to.Addr().Is4() {
			local = a
			break
		}
	}
	if !local.IsValid() {
		return nil, fmt.Errorf("opening UDP to %s through the tunnel: no tunnel address of that family", to)
	}
	if !ns.routable(to.Addr()) {
		return nil, fmt.Errorf("opening UDP to %s through the tunnel: no route", to)
	}
	return ns.bindUDP(netip.AddrPortFrom(local, 0), to)
}

func (ns *Stack) routable(a netip.Addr) bool {
	ns.routesMu.RLock()
	defer ns.routesMu.RUnlock()
	for _, p := range ns.routes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

const (
	ephemeralFirst = 32768
	ephemeralLast  = 60999
)

func (ns *Stack) bindUDP(at, remote netip.AddrPort) (*UDPConn, error) {
	at = netip.AddrPortFrom(at.Addr().Unmap(), at.Port())
	own := false
	for _, a := range ns.addrs {
		own = own || a == at.Addr()
	}
	if !own {
		return nil, fmt.Errorf("binding UDP %s: not one of the stack's addresses", at)
	}
	m := &ns.udp
	m.mu.Lock()
	defer m.mu.Unlock()
	if at.Port() == 0 {
		found := false
		for range ephemeralLast - ephemeralFirst + 1 {
			if m.next < ephemeralFirst || m.next > ephemeralLast {
				m.next = ephemeralFirst
			}
			p := netip.AddrPortFrom(at.Addr(), m.next)
			m.next++
			if m.bound[p] == nil {
				at, found = p, true
				break
			}
		}
		if !found {
			return nil, fmt.Errorf("binding UDP on %s: no free port", at.Addr())
		}
	} else if m.bound[at] != nil {
		return nil, fmt.Errorf("binding UDP %s: port in use", at)
	}
	c := &UDPConn{ns: ns, local: at, remote: remote, rx: make(chan datagram, udpQueueLen), closed: make(chan struct{})}
	c.rdl.init()
	c.wdl.init()
	m.bound[at] = c
	return c, nil
}

// ReadFrom implements net.PacketConn.
func (c *UDPConn) ReadFrom(b []byte) (int, net.Addr, error) {
	n, from, err := c.readFrom(b)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// ReadFromUDPAddrPort is ReadFrom without the allocation of a net.Addr.
func (c *UDPConn) ReadFromUDPAddrPort(b []byte) (int, netip.AddrPort, error) {
	return c.readFrom(b)
}

func (c *UDPConn) readFrom(b []byte) (int, netip.AddrPort, error) {
	select {
	case d := <-c.rx:
		return copy(b, d.b), d.from, nil
	default:
	}
	select {
	case d := <-c.rx:
		return copy(b, d.b), d.from, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, c.opError("read", net.ErrClosed)
	case <-c.rdl.wait():
		return 0, netip.AddrPort{}, c.opError("read", os.ErrDeadlineExceeded)
	}
}

// Read implements net.Conn for a dialled socket.
func (c *UDPConn) Read(b []byte) (int, error) {
	n, _, err := c.readFrom(b)
	return n, err
}

// WriteTo implements net.PacketConn.
func (c *UDPConn) WriteTo(b []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opError("write", fmt.Errorf("not a UDP address: %T", addr))
	}
	ap := ua.AddrPort()
	return c.write(b, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
}

// WriteToUDPAddrPort is WriteTo without a net.Addr.
func (c *UDPConn) WriteToUDPAddrPort(b []byte, to netip.AddrPort) (int, error) {
	return c.write(b, netip.AddrPortFrom(to.Addr().Unmap(), to.Port()))
}

// Write implements net.Conn for a dialled socket.
func (c *UDPConn) Write(b []byte) (int, error) {
	if !c.remote.IsValid() {
		return 0, c.opError("write", errors.New("not connected"))
	}
	return c.write(b, c.remote)
}

func (c *UDPConn) write(b []byte, to netip.AddrPort) (int, error) {
	select {
	case <-c.closed:
		return 0, c.opError("write", net.ErrClosed)
	default:
	}
	if c.wdl.expired() {
		return 0, c.opError("write", os.ErrDeadlineExceeded)
	}
	if to.Addr().Is4() != c.local.Addr().Is4() {
		return 0, c.opError("write", fmt.Errorf("address family of %s differs from %s", to, c.local))
	}
	if err := c.ns.sendUDP(c.local, to, b); err != nil {
		if errors.Is(err, syscall.EMSGSIZE) {
			return 0, errMsgSize
		}
		return 0, c.opError("write", err)
	}
	return len(b), nil
}

// sendUDP builds an IP/UDP packet and queues it for WireGuard. A datagram
// that would not fit the MTU fails with EMSGSIZE: it is never fragmented.
func (ns *Stack) sendUDP(from, to netip.AddrPort, payload []byte) error {
	v4 := from.Addr().Is4()
	ipLen := header.IPv6MinimumSize
	if v4 {
		ipLen = header.IPv4MinimumSize
	}
	total := ipLen + header.UDPMinimumSize + len(payload)
	if total > ns.mtu {
		return syscall.EMSGSIZE
	}
	if !ns.routable(to.Addr()) {
		return syscall.ENETUNREACH
	}
	pkt := make([]byte, total)
	src, dst := tcpip.AddrFromSlice(from.Addr().AsSlice()), tcpip.AddrFromSlice(to.Addr().AsSlice())
	if v4 {
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{
			TotalLength: uint16(total),
			ID:          uint16(ns.ipID.Add(1)),
			Flags:       header.IPv4FlagDontFragment,
			TTL:         64,
			Protocol:    uint8(header.UDPProtocolNumber),
			SrcAddr:     src,
			DstAddr:     dst,
		})
		ip.SetChecksum(^ip.CalculateChecksum())
	} else {
		ip := header.IPv6(pkt)
		ip.Encode(&header.IPv6Fields{
			PayloadLength:     uint16(header.UDPMinimumSize + len(payload)),
			TransportProtocol: header.UDPProtocolNumber,
			HopLimit:          64,
			SrcAddr:           src,
			DstAddr:           dst,
		})
	}
	u := header.UDP(pkt[ipLen:])
	u.Encode(&header.UDPFields{SrcPort: from.Port(), DstPort: to.Port(), Length: uint16(header.UDPMinimumSize + len(payload))})
	copy(pkt[ipLen+header.UDPMinimumSize:], payload)
	xsum := header.PseudoHeaderChecksum(header.UDPProtocolNumber, src, dst, uint16(header.UDPMinimumSize+len(payload)))
	xsum = checksum.Checksum(pkt[ipLen:], xsum)
	if xsum != 0xffff {
		xsum = ^xsum
	}
	u.SetChecksum(xsum)
	pb := stack.NewPacketBuffer(stack.PacketBufferOptions{Payload: buffer.MakeWithData(pkt)})
	defer pb.DecRef()
	var list stack.PacketBufferList
	list.PushBack(pb)
	if _, err := ns.ep.WritePackets(list); err != nil {
		// The queue to WireGuard is full: as lost as on a real link.
		return nil
	}
	return nil
}

// Close implements net.PacketConn.
func (c *UDPConn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		m := &c.ns.udp
		m.mu.Lock()
		if m.bound[c.local] == c {
			delete(m.bound, c.local)
		}
		m.mu.Unlock()
	})
	return nil
}

// LocalAddr implements net.PacketConn.
func (c *UDPConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.local) }

// RemoteAddr implements net.Conn; nil when not connected.
func (c *UDPConn) RemoteAddr() net.Addr {
	if !c.remote.IsValid() {
		return nil
	}
	return net.UDPAddrFromAddrPort(c.remote)
}

// SetDeadline implements net.PacketConn.
func (c *UDPConn) SetDeadline(t time.Time) error {
	c.rdl.set(t)
	c.wdl.set(t)
	return nil
}

// SetReadDeadline implements net.PacketConn.
func (c *UDPConn) SetReadDeadline(t time.Time) error { c.rdl.set(t); return nil }

// SetWriteDeadline implements net.PacketConn.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { c.wdl.set(t); return nil }

// SetReadBuffer accepts and ignores a size: the queue is fixed. quic-go
// asks, and takes nil as success, instead of warning that it cannot.
func (c *UDPConn) SetReadBuffer(int) error { return nil }

// SetWriteBuffer accepts and ignores a size.
func (c *UDPConn) SetWriteBuffer(int) error { return nil }

func (c *UDPConn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

// deadline is a settable deadline whose wait channel closes when it passes.
type deadline struct {
	mu    sync.Mutex
	t     time.Time
	timer *time.Timer
	c     chan struct{}
}

func (d *deadline) init() { d.c = make(chan struct{}) }

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.t = t
	if d.timer != nil {
		d.timer.Stop()
		d.timer = nil
	}
	select {
	case <-d.c:
		d.c = make(chan struct{}) // it had passed: a fresh one
	default:
	}
	if t.IsZero() {
		return
	}
	if wait := time.Until(t); wait <= 0 {
		close(d.c)
	} else {
		c := d.c
		d.timer = time.AfterFunc(wait, func() {
			d.mu.Lock()
			defer d.mu.Unlock()
			if d.c == c {
				select {
				case <-c:
				default:
					close(c)
				}
			}
		})
	}
}

func (d *deadline) wait() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.c
}

func (d *deadline) expired() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.t.IsZero() && !time.Now().Before(d.t)
}

// UDPQueueDrops counts datagrams dropped because a fast-path socket's queue
// was full.
func (ns *Stack) UDPQueueDrops() uint64 { return ns.udp.dropped.Load() }

// UDPMalformedDrops counts datagrams for a fast-path socket's port that
// were dropped as malformed rather than passed on to gVisor.
func (ns *Stack) UDPMalformedDrops() uint64 { return ns.udp.malformed.Load() }
