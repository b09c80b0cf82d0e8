package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.zx2c4.com/wireguard/conn"
)

// Listening is a conn.Bind holding one UDP socket listening on a port of
// every address (IPv6 and IPv4 where the host has both), for the side its
// peers dial. It does what wireguard-go's default bind does with one
// socket instead of one per address family, and batches of batchSize
// instead of conn.IdealBatchSize: wireguard-go holds a 64 KiB buffer for
// every datagram a receive function can be handed, so the default bind's
// two receive functions of 128 hold 16 MiB whatever the load, this one 4.
// Replies leave from whatever address the kernel's routes pick; a host
// with several addresses on one network should use the default bind,
// which remembers the address each peer reached.
type Listening struct {
	// NoOffload turns UDP GSO/GRO off (benchmarks measure each lever).
	NoOffload bool

	mu   sync.Mutex
	sock *socket // nil when closed

	bufs  sync.Pool // *sendBufs
	drops atomic.Uint64
}

// NewListening returns a listening bind; Open picks its port.
func NewListening() *Listening { return &Listening{} }

var _ conn.Bind = (*Listening)(nil)

// Open implements conn.Bind: it listens on port (zero: one the kernel
// picks) on every address.
func (b *Listening) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	// "udp" with no address is a dual-stack socket where the host has
	// IPv6, an IPv4 one where it has not.
	uc, err := net.ListenUDP("udp", &net.UDPAddr{Port: int(port)})
	if err != nil {
		return nil, 0, fmt.Errorf("listening on UDP port %d: %w", port, err)
	}
	local := uc.LocalAddr().(*net.UDPAddr)
	s, err := newSocket(uc, local.IP.To4() != nil, b.NoOffload)
	if err != nil {
		return nil, 0, err
	}
	b.sock = s
	return []conn.ReceiveFunc{b.receiveFunc(s)}, uint16(local.Port), nil
}

func (b *Listening) receiveFunc(s *socket) conn.ReceiveFunc {
	msgs := newReceiveMessages()
	// The endpoint of the last sender, reused while it keeps sending: a
	// point-to-point tunnel hears one peer almost always.
	var last *Endpoint
	epOf := func(m *ipv4.Message) conn.Endpoint {
		ua, ok := m.Addr.(*net.UDPAddr)
		if !ok {
			return &Endpoint{}
		}
		ap := ua.AddrPort()
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if last == nil || last.AddrPort != ap {
			last = &Endpoint{AddrPort: ap}
		}
		return last
	}
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			n, err := readBatch(s.batch, s.offload.Load(), msgs, packets, sizes, eps, epOf, &b.drops)
			if err != nil && errors.Is(err, syscall.ECONNREFUSED) {
				// An ICMP error for an earlier send: a lost packet.
				continue
			}
			return n, err
		}
	}
}

// Drops is how many datagrams the kernel dropped because the socket's
// receive buffer was full.
func (b *Listening) Drops() uint64 { return b.drops.Load() }

// Close implements conn.Bind.
func (b *Listening) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.sock == nil {
		return nil
	}
	err := b.sock.uc.Close()
	b.sock = nil
	return err
}

// SetMark implements conn.Bind, as Connected's does.
func (b *Listening) SetMark(mark uint32) error { return refuseMark(mark) }

// Send implements conn.Bind.
func (b *Listening) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	s := b.sock
	b.mu.Unlock()
	if s == nil {
		return net.ErrClosed
	}
	return sendOn(s.batch, &b.bufs, &s.offload, bufs, net.UDPAddrFromAddrPort(e.AddrPort))
}

// ParseEndpoint implements conn.Bind.
func (b *Listening) ParseEndpoint(s string) (conn.Endpoint, error) { return parseEndpoint(s) }

// BatchSize implements conn.Bind.
func (b *Listening) BatchSize() int { return batchSize }
