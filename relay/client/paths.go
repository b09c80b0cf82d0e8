package client

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// DefaultPathTimeout is how long a worker with several relay addresses
// sends without hearing anything back before it moves to the next
// address. Liveness probes (DefaultProbeEvery) make sure something is
// always sent, and relay answers each, so on a live path the silence is
// one round trip. It is shorter than a gateway's own upstream failover
// (2.75 s), which it does not wait for: a move to a path whose gateway is
// also failing over costs nothing but another move.
const DefaultPathTimeout = 1500 * time.Millisecond

// pathConn is one UDP socket to relay through several addresses (the
// forward ports of several gateways), one at a time. QUIC sees a single
// remote address, the first; pathConn sends to the current one and
// presents whatever comes from any of them as from the first. When it has
// sent for timeout without receiving, it moves to the next address. To
// relay the move is a client changing its address (a NAT rebinding): it
// validates the new path and the connection — its streams, the lease
// answers in flight — carries on, with no new handshake.
type pathConn struct {
	net.PacketConn
	addrs   []netip.AddrPort
	names   []string // as configured, for logs
	virtual *net.UDPAddr
	timeout time.Duration
	log     *slog.Logger
	// moved is signalled on each move, so that a probe goes out on the
	// new path at once: its answer, acknowledged, shows relay which of
	// its packets were lost on the old path, and it resends them without
	// waiting out its retransmission timer.
	moved chan struct{}

	mu        sync.Mutex
	cur       int
	lastRecv  time.Time // the last packet from relay, or the dial
	sentSince time.Time // first send since the last receive; zero when none
	moves     int
}

func newPathConn(pc net.PacketConn, names []string, addrs []*net.UDPAddr, start int, timeout time.Duration, log *slog.Logger) *pathConn {
	p := &pathConn{PacketConn: pc, names: names, virtual: addrs[0], timeout: timeout, log: log, cur: start % len(addrs), moved: make(chan struct{}, 1), lastRecv: time.Now()}
	for _, a := range addrs {
		p.addrs = append(p.addrs, addrPort(a))
	}
	return p
}

func addrPort(a *net.UDPAddr) netip.AddrPort {
	ap := a.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// ReadFrom receives from any of the addresses, reported as the first.
func (p *pathConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		n, from, err := p.PacketConn.ReadFrom(b)
		if err != nil {
			return n, from, err
		}
		ua, ok := from.(*net.UDPAddr)
		if !ok {
			continue
		}
		ap := addrPort(ua)
		known := false
		for _, a := range p.addrs {
			if a == ap {
				known = true
				break
			}
		}
		if !known {
			continue // not one of relay's paths
		}
		p.mu.Lock()
		p.sentSince, p.lastRecv = time.Time{}, time.Now()
		p.mu.Unlock()
		return n, p.virtual, nil
	}
}

// WriteTo sends to the current address, moving to the next one first if
// this path has been silent for the timeout: nothing received for that
// long, and nothing in answer to what was sent a third of it ago or more.
func (p *pathConn) WriteTo(b []byte, _ net.Addr) (int, error) {
	now := time.Now()
	p.mu.Lock()
	if p.sentSince.IsZero() {
		p.sentSince = now
	} else if silent := now.Sub(p.lastRecv); silent >= p.timeout && now.Sub(p.sentSince) >= p.timeout/3 && len(p.addrs) > 1 {
		from := p.cur
		p.cur = (p.cur + 1) % len(p.addrs)
		p.sentSince, p.lastRecv = now, now
		p.moves++
		p.log.Warn("no answer from relay on this path; moving to the next address",
			"from", p.names[from], "to", p.names[p.cur], "silent_for", silent.Round(time.Millisecond).String())
		select {
		case p.moved <- struct{}{}:
		default:
		}
	}
	to := p.addrs[p.cur]
	p.mu.Unlock()
	return p.PacketConn.WriteTo(b, net.UDPAddrFromAddrPort(to))
}

// current is the index of the address in use.
func (p *pathConn) current() (int, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cur, p.moves
}

// resolveAll resolves every address, naming the one that fails.
func resolveAll(addrs []string) ([]*net.UDPAddr, error) {
	out := make([]*net.UDPAddr, len(addrs))
	for i, a := range addrs {
		ua, err := net.ResolveUDPAddr("udp", a)
		if err != nil {
			return nil, fmt.Errorf("resolving %s: %w", a, err)
		}
		out[i] = ua
	}
	return out, nil
}

// SetReadBuffer, SetWriteBuffer and SyscallConn reach the socket, so that
// QUIC can size its buffers as it does on a plain one.
func (p *pathConn) SetReadBuffer(n int) error {
	if s, ok := p.PacketConn.(interface{ SetReadBuffer(int) error }); ok {
		return s.SetReadBuffer(n)
	}
	return errors.New("the socket's receive buffer cannot be set")
}

func (p *pathConn) SetWriteBuffer(n int) error {
	if s, ok := p.PacketConn.(interface{ SetWriteBuffer(int) error }); ok {
		return s.SetWriteBuffer(n)
	}
	return errors.New("the socket's send buffer cannot be set")
}

func (p *pathConn) SyscallConn() (syscall.RawConn, error) {
	if s, ok := p.PacketConn.(syscall.Conn); ok {
		return s.SyscallConn()
	}
	return nil, errors.New("not a system socket")
}
