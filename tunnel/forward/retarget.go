package forward

import (
	"context"
	"net"
)

// Retarget gives every session whose socket stale reports a fresh socket
// from Dial, keeping the session itself: its source, its place in the
// table, the way back for its replies. A forward rule with several
// upstreams calls it when one stops being healthy, so that a flow (a QUIC
// connection, say) carries on through the next. Datagrams in flight on the
// old socket are lost; a session whose new socket cannot be dialled keeps
// its old one. It returns how many sessions moved.
func (p *UDP) Retarget(ctx context.Context, stale func(net.Conn) bool) int {
	p.mu.Lock()
	all := make([]*session, 0, len(p.sessions))
	for _, s := range p.sessions {
		all = append(all, s)
	}
	p.mu.Unlock()
	moved := 0
	for _, s := range all {
		s.mu.Lock()
		old, closed := s.conn, s.closed
		s.mu.Unlock()
		if old == nil || closed || !stale(old) {
			continue
		}
		conn, err := p.dial(ctx, s, "re-dialling a session failed; it keeps its socket")
		if err != nil {
			continue
		}
		s.mu.Lock()
		if s.closed || s.conn != old {
			s.mu.Unlock()
			conn.Close()
			continue
		}
		s.conn = conn
		s.mu.Unlock()
		// Ends the read on old in run, which then reads from conn.
		old.Close()
		moved++
	}
	return moved
}

// dial opens a socket for session s within DialTimeout; a failure is
// counted and logged with msg.
func (p *UDP) dial(ctx context.Context, s *session, msg string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, p.DialTimeout)
	defer cancel()
	conn, err := p.Dial(dctx)
	if err != nil {
		p.Stats.drop(DropDialFailed)
		p.Logger.Warn(msg, "rule", p.Name, "from", s.src.String(), "err", err)
	}
	return conn, err
}

// replaced returns the socket Retarget put in place of conn, or nil when
// conn is still the session's (it failed) or the session is closed.
func (s *session) replaced(conn net.Conn) net.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.conn == conn {
		return nil
	}
	return s.conn
}

// CloseWhere closes every connection in flight whose dialled side stale
// reports, so that its client learns at once that the flow is over (and
// reconnects) rather than waiting on a far end that is gone. It returns
// how many it closed.
func (p *TCP) CloseWhere(stale func(net.Conn) bool) int {
	p.mu.Lock()
	var hit []net.Conn
	for c := range p.conns {
		if stale(c) {
			hit = append(hit, c)
		}
	}
	p.mu.Unlock()
	for _, c := range hit {
		c.Close()
	}
	return len(hit)
}
