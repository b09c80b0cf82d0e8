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
	"golang.org/x/net/ipv6"
	"golang.zx2c4.com/wireguard/conn"
)

// batchSize is how many datagrams one read or write system call moves,
// and how many 64 KiB buffers wireguard-go holds for each receive
// function: half of conn.IdealBatchSize, which with UDP offload is still
// one system call per 64 datagrams. It must stay at least maxSegments, or
// a GRO train would not fit the buffers of one read.
const batchSize = 64

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
	// NoOffload turns UDP GSO/GRO off (benchmarks measure each lever).
	NoOffload bool
	drops     atomic.Uint64 // datagrams the kernel dropped: receive buffer full
}

type sendBufs struct {
	msgs [batchSize]ipv4.Message
	oob  [batchSize][]byte
}

// generation is one Open..Close span: receive functions from an earlier
// Open must see net.ErrClosed even after the bind is opened again.
type generation struct {
	done chan struct{}
	port uint16
}

// socket is one tuned UDP socket of a bind; remote and ep are a
// connected socket's peer (zero on a listening one).
type socket struct {
	uc      *net.UDPConn
	batch   batchConn
	remote  netip.AddrPort
	ep      *Endpoint
	offload atomic.Bool // UDP GSO/GRO in use
}

// newSocket tunes uc (buffers, UDP offload unless noOffload) and wraps it
// for batched I/O, as an IPv4 socket when v4; on error it closes uc.
func newSocket(uc *net.UDPConn, v4, noOffload bool) (*socket, error) {
	offload, err := tune(uc)
	if err != nil {
		uc.Close()
		return nil, err
	}
	s := &socket{uc: uc}
	s.offload.Store(offload && !noOffload)
	if v4 {
		s.batch = ipv4.NewPacketConn(uc)
	} else {
		s.batch = ipv6Batch{ipv6.NewPacketConn(uc)}
	}
	return s, nil
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
	s, err := newSocket(uc, network == "udp4", b.NoOffload)
	if err != nil {
		return err
	}
	s.remote, s.ep = remote, &Endpoint{AddrPort: remote}
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
	msgs := newReceiveMessages()
	return func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		for {
			s, err := b.current(g)
			if err != nil {
				return 0, err
			}
			n, err := b.read(s, msgs, packets, sizes, eps)
			if err == nil {
				return n, nil
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

// read receives one batch from the connected socket.
func (b *Connected) read(s *socket, msgs []ipv4.Message, packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
	return readBatch(s.batch, s.offload.Load(), msgs, packets, sizes, eps, func(*ipv4.Message) conn.Endpoint { return s.ep }, &b.drops)
}

// readBatch receives one batch. With GRO a message may hold up to 64
// datagrams, so messages are read into the last few buffers and cut into
// the buffers before them. epOf names each message's sender; drops gets
// the socket's overflow count.
func readBatch(c batchConn, offload bool, msgs []ipv4.Message, packets [][]byte, sizes []int, eps []conn.Endpoint,
	epOf func(*ipv4.Message) conn.Endpoint, drops *atomic.Uint64) (int, error) {
	limit := min(len(packets), len(msgs))
	readAt, k := 0, limit
	if offload {
		k = max(1, limit/maxSegments)
		readAt = limit - k
	}
	for j := range k {
		msgs[j].Buffers[0] = packets[readAt+j]
		msgs[j].OOB = msgs[j].OOB[:cap(msgs[j].OOB)]
		msgs[j].N, msgs[j].NN = 0, 0
	}
	got, err := c.ReadBatch(msgs[:k], 0)
	if err != nil {
		return 0, err
	}
	n := 0
	for j := range got {
		buf := packets[readAt+j][:msgs[j].N]
		seg, dropped, ok := parseControl(msgs[j].OOB[:msgs[j].NN])
		if ok {
			drops.Store(uint64(dropped))
		}
		ep := epOf(&msgs[j])
		if seg <= 0 || seg >= len(buf) {
			if n != readAt+j {
				copy(packets[n], buf)
			}
			sizes[n], eps[n] = len(buf), ep
			n++
			continue
		}
		for start := 0; start < len(buf) && n < len(packets); start += seg {
			end := min(start+seg, len(buf))
			// Earlier segments of buf are consumed before a later
			// buffer's copy could overwrite them: copy moves forward.
			copy(packets[n], buf[start:end])
			sizes[n], eps[n] = end-start, ep
			n++
		}
	}
	return n, nil
}

// Drops is how many datagrams the kernel dropped because the socket's
// receive buffer was full.
func (b *Connected) Drops() uint64 { return b.drops.Load() }

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
func (b *Connected) SetMark(mark uint32) error { return refuseMark(mark) }

func refuseMark(mark uint32) error {
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

	err := sendOn(s.batch, &b.bufs, &s.offload, bufs, nil)
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil // the peer is not up yet: as good as lost
	}
	return err
}

// newReceiveMessages makes a receive function's messages, one buffer each.
func newReceiveMessages() []ipv4.Message {
	msgs := make([]ipv4.Message, batchSize)
	for i := range msgs {
		msgs[i].Buffers = make([][]byte, 1)
		msgs[i].OOB = make([]byte, oobSize)
	}
	return msgs
}

// sendOn sends bufs on c to to (nil on a connected socket). Where the
// kernel or device cannot segment, offload is turned off and the rest is
// sent without it.
func sendOn(c batchConn, pool *sync.Pool, offload *atomic.Bool, bufs [][]byte, to net.Addr) error {
	sb := getSendBufs(pool)
	defer pool.Put(sb)
	for {
		on := offload.Load()
		rest, err := sendBatches(c, sb, bufs, on, to)
		if on && errors.Is(err, syscall.EIO) {
			offload.Store(false)
			bufs = rest
			continue
		}
		return err
	}
}

func getSendBufs(pool *sync.Pool) *sendBufs {
	sb, _ := pool.Get().(*sendBufs)
	if sb == nil {
		sb = new(sendBufs)
		for i := range sb.oob {
			sb.oob[i] = make([]byte, oobSize)
		}
	}
	return sb
}

// sendBatches writes bufs in as few system calls as it can: coalesced
// into UDP_SEGMENT trains with offload, a message each without. to is the
// destination of an unconnected socket, nil for a connected one. On an
// error it returns the bufs not yet sent.
func sendBatches(c batchConn, sb *sendBufs, bufs [][]byte, offload bool, to net.Addr) (rest [][]byte, err error) {
	for len(bufs) > 0 {
		var n, used int
		if offload {
			n, used = coalesce(bufs, sb)
		} else {
			n = min(len(bufs), batchSize)
			for i := range n {
				sb.msgs[i].Buffers = bufs[i : i+1 : i+1]
				sb.msgs[i].OOB = nil
			}
			used = n
		}
		for i := range n {
			sb.msgs[i].Addr = to
		}
		if err := writeAll(c, sb.msgs[:n]); err != nil {
			return bufs, err
		}
		bufs = bufs[used:]
	}
	return nil, nil
}

// writeAll writes every message, in as many calls as it takes.
func writeAll(c batchConn, msgs []ipv4.Message) error {
	for len(msgs) > 0 {
		sent, err := c.WriteBatch(msgs, 0)
		if err != nil {
			return err
		}
		msgs = msgs[sent:]
	}
	return nil
}

// coalesce packs runs of equal-sized packets from bufs into messages with a
// UDP_SEGMENT size, each run one message whose buffers are the packets
// themselves: the kernel gathers them (an iovec each) as it copies the
// datagram in, so nothing is copied here. (Appending each run into its
// first packet's spare room cost a memmove of every byte sent: 4-5 % of a
// sending gateway's CPU.) A shorter packet may end a run. It returns the
// messages made and how many bufs they hold.
func coalesce(bufs [][]byte, sb *sendBufs) (msgs, used int) {
	for used < len(bufs) && msgs < batchSize {
		start := used
		size := len(bufs[used])
		total := size
		used++
		for used < len(bufs) && used-start < maxSegments {
			next := len(bufs[used])
			if next > size || total+next > maxCoalesced {
				break
			}
			total += next
			used++
			if next < size {
				break // a short datagram ends a run
			}
		}
		sb.msgs[msgs].Buffers = bufs[start:used:used]
		if used-start > 1 {
			sb.msgs[msgs].OOB = putSegmentSize(sb.oob[msgs], uint16(size))
		} else {
			sb.msgs[msgs].OOB = nil
		}
		msgs++
	}
	return msgs, used
}

// ParseEndpoint implements conn.Bind.
func (b *Connected) ParseEndpoint(s string) (conn.Endpoint, error) { return parseEndpoint(s) }

func parseEndpoint(s string) (conn.Endpoint, error) {
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
