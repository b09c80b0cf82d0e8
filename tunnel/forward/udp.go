package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// UDP relays datagrams arriving on Conn, one session per source address
// and port: each session has its own socket to the other side, made by
// Dial, and its replies go back to that source. Sessions expire after
// IdleTimeout with no traffic either way; a session that never got a reply
// expires after UnrepliedTimeout from its start, and is the first evicted
// when the rule is full, so a flood of datagrams from fresh ports can
// neither outlive a real flow nor lock one out.
type UDP struct {
	Name string
	Conn net.PacketConn
	// Dial opens a session's socket to the other side.
	Dial        func(ctx context.Context) (net.Conn, error)
	DialTimeout time.Duration
	IdleTimeout time.Duration
	// UnrepliedTimeout ends a session that has had no reply this long
	// after it started; zero means DialTimeout plus
	// DefaultUnrepliedTimeout, or IdleTimeout if that is shorter.
	UnrepliedTimeout time.Duration
	// MaxSessions caps the rule's sessions. At the cap, a new source
	// evicts the oldest session that never got a reply; if every session
	// has had one, the datagram is refused (session_limit).
	MaxSessions int
	// MaxPerSource caps the sessions of one source address (any port);
	// past it a new session is refused (source_limit). Zero: no cap.
	MaxPerSource int
	// MaxUp and MaxDown are the largest datagrams carried each way; larger
	// ones are dropped and counted, never fragmented. Up is from Conn's
	// sources to the other side.
	MaxUp, MaxDown int
	Stats          *Stats
	Logger         *slog.Logger

	mu        sync.Mutex
	sessions  map[netip.AddrPort]*session
	perSource map[netip.Addr]int
	wg        sync.WaitGroup
}

// PerSourceShare is the share of a forward rule's sessions one source
// address may hold: a quarter, so one host cannot take them all, but never
// fewer than 64 (or the whole cap, if that is smaller), so a small cap
// still serves a client with several sockets.
func PerSourceShare(maxSessions int) int {
	if maxSessions <= 0 {
		return 0
	}
	return max(maxSessions/4, min(maxSessions, 64))
}

// DefaultUnrepliedTimeout is how long a session may wait for its first
// reply. A QUIC or DNS peer answers in a round trip; a flooder's sessions
// never are answered.
const DefaultUnrepliedTimeout = 5 * time.Second

func (p *UDP) unrepliedTimeout() time.Duration {
	d := p.UnrepliedTimeout
	if d <= 0 {
		// Counted from the first datagram: the socket may take up to
		// DialTimeout to open before anything is sent.
		d = DefaultUnrepliedTimeout + p.DialTimeout
	}
	if p.IdleTimeout > 0 {
		d = min(d, p.IdleTimeout)
	}
	return d
}

// pendingMax bounds datagrams held while a session's socket is dialled.
const pendingMax = 32

type session struct {
	src     netip.AddrPort
	addr    net.Addr // src as Conn wants it for WriteTo
	started int64    // UnixNano
	last    atomic.Int64
	replied atomic.Bool // the other side has answered at least once
	dead    atomic.Bool // set by close; a dead session is replaced, not used

	mu      sync.Mutex
	conn    net.Conn // nil while dialling
	pending [][]byte
	closed  bool
}

func (s *session) touch(now time.Time) { s.last.Store(now.UnixNano()) }

// Serve reads until Conn is closed or ctx is done, then closes every
// session.
func (p *UDP) Serve(ctx context.Context) error {
	p.mu.Lock()
	p.sessions = map[netip.AddrPort]*session{}
	p.perSource = map[netip.Addr]int{}
	p.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { p.Conn.Close() })
	defer stop()

	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		p.expire(ctx)
	}()
	defer func() {
		cancel()
		p.closeAll()
		p.wg.Wait()
	}()

	// One read buffer, big enough for any datagram, so that an oversize one
	// is seen whole and counted rather than silently truncated.
	buf := make([]byte, 64<<10)
	for {
		n, from, err := p.Conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if n > p.MaxUp {
			p.Stats.drop(DropOversize)
			continue
		}
		src, ok := addrPort(from)
		if !ok {
			continue
		}
		p.up(ctx, src, from, buf[:n])
	}
}

func addrPort(a net.Addr) (netip.AddrPort, bool) {
	if ua, ok := a.(*net.UDPAddr); ok {
		ap := ua.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	ap, err := netip.ParseAddrPort(a.String())
	return ap, err == nil
}

// up sends one datagram from src to the other side, starting a session if
// src has none.
func (p *UDP) up(ctx context.Context, src netip.AddrPort, from net.Addr, b []byte) {
	now := time.Now()
	p.mu.Lock()
	s := p.sessions[src]
	if s != nil && s.dead.Load() {
		// Expired a moment ago: start afresh rather than lose the datagram.
		p.forgetLocked(s)
		s = nil
	}
	if s == nil {
		var victim *session
		if p.MaxSessions > 0 && len(p.sessions) >= p.MaxSessions {
			if victim = p.oldestUnrepliedLocked(); victim == nil {
				p.mu.Unlock()
				p.Stats.drop(DropSessionLimit)
				return
			}
		}
		if p.MaxPerSource > 0 && p.perSource[src.Addr()] >= p.MaxPerSource {
			p.mu.Unlock()
			p.Stats.drop(DropSourceLimit)
			return
		}
		if victim != nil {
			p.forgetLocked(victim)
			p.Stats.drop(DropEvicted)
			// Closing ends its run; remove then finds it already gone.
			victim.close()
		}
		s = &session{src: src, addr: from, started: now.UnixNano()}
		s.touch(now)
		p.sessions[src] = s
		p.perSource[src.Addr()]++
		p.Stats.opened()
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.run(ctx, s)
		}()
	}
	p.mu.Unlock()
	s.touch(now)

	s.mu.Lock()
	conn := s.conn
	if conn == nil {
		if s.closed {
			s.mu.Unlock()
			return
		}
		if len(s.pending) >= pendingMax {
			s.mu.Unlock()
			p.Stats.drop(DropPending)
			return
		}
		s.pending = append(s.pending, append([]byte(nil), b...))
		s.mu.Unlock()
		return
	}
	s.mu.Unlock()
	if _, err := conn.Write(b); err != nil {
		p.Stats.drop(DropWriteFailed)
		return
	}
	p.Stats.bytesUp.Add(uint64(len(b)))
}

// run dials the session's socket, flushes what waited, then relays replies
// until the socket is closed (by expiry or shutdown).
func (p *UDP) run(ctx context.Context, s *session) {
	defer p.remove(s)
	conn, err := p.dial(ctx, s, "dial failed")
	if err != nil {
		return
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		conn.Close()
		return
	}
	for _, b := range s.pending {
		if _, err := conn.Write(b); err != nil {
			p.Stats.drop(DropWriteFailed)
			continue
		}
		p.Stats.bytesUp.Add(uint64(len(b)))
	}
	s.pending = nil
	s.conn = conn
	s.mu.Unlock()

	buf := make([]byte, p.MaxDown+1)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			if next := s.replaced(conn); next != nil {
				conn = next // Retarget moved the session
				continue
			}
			// Closed by expiry or shutdown, or the socket failed (an
			// ICMP error on a connected socket): the session ends; the
			// next datagram from src starts a new one.
			return
		}
		if n > p.MaxDown {
			p.Stats.drop(DropOversize)
			continue
		}
		s.touch(time.Now())
		s.replied.Store(true)
		if _, err := p.Conn.WriteTo(buf[:n], s.addr); err != nil {
			p.Stats.drop(DropWriteFailed)
			continue
		}
		p.Stats.bytesDown.Add(uint64(n))
	}
}

// remove forgets a session and closes its socket.
func (p *UDP) remove(s *session) {
	p.mu.Lock()
	if p.sessions[s.src] == s {
		p.forgetLocked(s)
	}
	p.mu.Unlock()
	s.close()
}

// forgetLocked takes a session out of the table and its source's count.
func (p *UDP) forgetLocked(s *session) {
	delete(p.sessions, s.src)
	if n := p.perSource[s.src.Addr()]; n > 1 {
		p.perSource[s.src.Addr()] = n - 1
	} else {
		delete(p.perSource, s.src.Addr())
	}
	p.Stats.closed()
}

// oldestUnrepliedLocked picks the session to evict when the rule is full:
// the oldest of those that never got a reply, or nil if all have.
func (p *UDP) oldestUnrepliedLocked() *session {
	var victim *session
	for _, s := range p.sessions {
		if s.replied.Load() || s.dead.Load() {
			continue
		}
		if victim == nil || s.started < victim.started {
			victim = s
		}
	}
	return victim
}

func (s *session) close() {
	s.dead.Store(true)
	s.mu.Lock()
	s.closed = true
	c := s.conn
	s.pending = nil
	s.mu.Unlock()
	if c != nil {
		c.Close()
	}
}

// expire closes sessions idle for IdleTimeout, and those that had no reply
// UnrepliedTimeout after they started.
func (p *UDP) expire(ctx context.Context) {
	unreplied := p.unrepliedTimeout()
	every := min(max(min(p.IdleTimeout, unreplied)/4, 10*time.Millisecond), 5*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cutoff := now.Add(-p.IdleTimeout).UnixNano()
			unansweredSince := now.Add(-unreplied).UnixNano()
			var idle []*session
			p.mu.Lock()
			for _, s := range p.sessions {
				if s.last.Load() < cutoff || !s.replied.Load() && s.started < unansweredSince {
					idle = append(idle, s)
				}
			}
			p.mu.Unlock()
			for _, s := range idle {
				// Closing the socket ends run, which removes the session.
				s.close()
			}
		}
	}
}

func (p *UDP) closeAll() {
	p.mu.Lock()
	all := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		all = append(all, s)
	}
	p.mu.Unlock()
	for _, s := range all {
		s.close()
	}
}

// Sessions returns how many sessions are open.
func (p *UDP) Sessions() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.sessions)
}
