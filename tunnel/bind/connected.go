package bind

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
)

// batchSize is how many datagrams one read or write system call moves.
const batchSize = conn.IdealBatchSize

// Connected is a conn.Bind holding one UDP socket connected to one remote
// endpoint. A Send to another endpoint (the peer's name re-resolved to a new
// address) re-connects; receives carry on on the new socket.
type Connected struct {
	mu     sync.Mutex
	remote netip.AddrPort // where to connect; invalid until known
	sock   *socket
	gen    *generation // the current Open; nil when closed
	change chan struct{}
	bufs   sync.Pool // *sendBufs
}

type sendBufs struct {
	msgs [batchSize]ipv4.Message
	one  [batchSize][1][]byte
}

// generation is one Open..Close span: receive functions from an earlier
// Open must see net.ErrClosed even after the bind is opened again.
type generation struct {
	done chan struct{}
	port uint16
}

type socket struct {
	uc     *net.UDPConn
	batch  batchConn
	remote netip.AddrPort
	ep     *Endpoint
}

// batchConn is what ipv4.PacketConn and ipv6.PacketConn share.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// NewConnected returns a bind that will connect to remote. An invalid
// remote (the peer's name did not resolve yet) is learnt from the first
// Send.
func NewConnected(remote netip.AddrPort) *Connected {
	return &Connected{remote: remote, change: make(chan struct{})}
}

var _ conn.Bind = (*Connected)(nil)

// Open implements conn.Bind. port is the local port to bind, if free; zero
// picks one.
func (b *Connected) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen != nil {
		return nil, 0, conn.ErrBindAlreadyOpen
	}
	g := &generation{done: make(chan struct{}), port: port}
	b.gen = g
	if b.remote.IsValid() {
		if err := b.dialLocked(b.remote); err != nil {
			b.gen = nil
			return nil, 0, err
		}
	}
	actual := uint16(0)
	if b.sock != nil {
		actual = uint16(b.sock.uc.LocalAddr().(*net.UDPAddr).Port)
	}
	return []conn.ReceiveFunc{b.receiveFunc(g)}, actual, nil
}

// dialLocked replaces the socket with one connected to remote.
func (b *Connected) dialLocked(remote netip.AddrPort) error {
	var laddr *net.UDPAddr
	if b.gen != nil && b.gen.port != 0 {
		laddr = &net.UDPAddr{Port: int(b.gen.port)}
	}
	network := "udp4"
	if remote.Addr().Is6() && !remote.Addr().Is4In6() {
		network = "udp6"
	}
	uc, err := net.DialUDP(network, laddr, net.UDPAddrFromAddrPort(remote))
	if err != nil && laddr != nil {
		// The old local port is taken: any port will do.
		uc, err = net.DialUDP(network, nil, net.UDPAddrFromAddrPort(remote))
	}
	if err != nil {
		return fmt.Errorf("connecting UDP socket to %s: %w", remote, err)
	}
	s := &socket{uc: uc, remote: remote, ep: &Endpoint{AddrPort: remote}}
	if network == "udp4" {
		s.batch = ipv4.NewPacketConn(uc)
	} else {
		s.batch = ipv6Batch{ipv6.NewPacketConn(uc)}
	}
	old := b.sock
	b.sock = s
	b.remote = remote
	if b.gen != nil {
		b.gen.port = uint16(uc.LocalAddr().(*net.UDPAddr).Port)
	}
	if old != nil {
		old.uc.Close()
	}
	close(b.change)
	b.change = make(chan struct{})
	return nil
}

type ipv6Batch struct{ pc *ipv6.PacketConn }

func (c ipv6Batch) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.pc.ReadBatch(ms, flags)
}

func (c ipv6Batch) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.pc.WriteBatch(ms, flags)
}

// current waits for a socket of generation g.
func (b *Connected) current(g *generation) (*socket, error) {
	for {
		b.mu.Lock()
		s, change := b.sock, b.change
		live := b.gen == g
		b.mu.Unlock()
		if !live {
			return nil, net.ErrClosed
		}
		if s != nil {
			return s, nil
		}
		select {
		case <-change:
		case <-g.done:
			return nil, net.ErrClosed
		}
	}
}

func (b *Connected) receiveFunc(g *generation) conn.ReceiveFunc {
	msgs := make([]ipv4.Message, batchSize)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
	}
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			s, err := b.current(g)
			if err != nil {
				return 0, err
			}
			n := min(len(packets), len(msgs))
			for i := range n {
				msgs[i].Buffers[0] = packets[i]
				msgs[i].N = 0
			}
			got, err := s.batch.ReadBatch(msgs[:n], 0)
			if err == nil {
				for i := range got {
					sizes[i] = msgs[i].N
					eps[i] = s.ep
				}
				return got, nil
			}
			b.mu.Lock()
			replaced, live := b.sock != s, b.gen == g
			b.mu.Unlock()
			switch {
			case !live:
				return 0, net.ErrClosed
			case replaced:
				continue
			case errors.Is(err, syscall.ECONNREFUSED):
				// An ICMP port unreachable: the peer is not up yet. A
				// connected socket reports it; it is just a lost packet.
				continue
			}
			return 0, err
		}
	}
}

// Close implements conn.Bind.
func (b *Connected) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.gen != nil {
		close(b.gen.done)
		b.gen = nil
	}
	if b.sock != nil {
		err := b.sock.uc.Close()
		b.sock = nil
		return err
	}
	return nil
}

// SetMark implements conn.Bind. Marks need CAP_NET_ADMIN, which a gateway
// does not have; zero (no mark) is accepted.
func (b *Connected) SetMark(mark uint32) error {
	if mark != 0 {
		return errors.New("setting a firewall mark needs CAP_NET_ADMIN, which the gateway does not take")
	}
	return nil
}

// Send implements conn.Bind.
func (b *Connected) Send(bufs [][]byte, ep conn.Endpoint) error {
	e, ok := ep.(*Endpoint)
	if !ok {
		return conn.ErrWrongEndpointType
	}
	b.mu.Lock()
	s := b.sock
	if b.gen == nil {
		b.mu.Unlock()
		return net.ErrClosed
	}
	if s == nil || s.remote != e.AddrPort {
		if err := b.dialLocked(e.AddrPort); err != nil {
			b.mu.Unlock()
			return err
		}
		s = b.sock
	}
	b.mu.Unlock()

	sb, _ := b.bufs.Get().(*sendBufs)
	if sb == nil {
		sb = new(sendBufs)
	}
	defer b.bufs.Put(sb)
	for len(bufs) > 0 {
		n := min(len(bufs), batchSize)
		for i := range n {
			sb.one[i][0] = bufs[i]
			sb.msgs[i].Buffers = sb.one[i][:]
		}
		sent, err := s.batch.WriteBatch(sb.msgs[:n], 0)
		if err != nil {
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil // the peer is not up yet: as good as lost
			}
			return err
		}
		bufs = bufs[sent:]
	}
	return nil
}

// ParseEndpoint implements conn.Bind.
func (b *Connected) ParseEndpoint(s string) (conn.Endpoint, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return nil, err
	}
	return &Endpoint{AddrPort: netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())}, nil
}

// BatchSize implements conn.Bind.
func (b *Connected) BatchSize() int { return batchSize }

// Endpoint is a remote address and port.
type Endpoint struct {
	netip.AddrPort
}

// ClearSrc implements conn.Endpoint; a connected socket has no sticky source.
func (e *Endpoint) ClearSrc() {}

// SrcToString implements conn.Endpoint.
func (e *Endpoint) SrcToString() string { return "" }

// DstToString implements conn.Endpoint.
func (e *Endpoint) DstToString() string { return e.AddrPort.String() }

// DstToBytes implements conn.Endpoint.
func (e *Endpoint) DstToBytes() []byte {
	b, _ := e.AddrPort.MarshalBinary()
	return b
}

// DstIP implements conn.Endpoint.
func (e *Endpoint) DstIP() netip.Addr { return e.AddrPort.Addr() }

// SrcIP implements conn.Endpoint.
func (e *Endpoint) SrcIP() netip.Addr { return netip.Addr{} }
