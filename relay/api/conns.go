package api

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/ratelog"
)

// DefaultMaxConns bounds the producer API's connections per producer, and
// per source address for those not yet authenticated, when
// ServerOptions.MaxConns is zero.
const DefaultMaxConns = 16

// Values of relay_producer_conns_refused_total's reason label.
const (
	connsPerAddress  = "address"  // closed before TLS: the address has MaxConns unauthenticated connections open
	connsPerProducer = "producer" // answered 429 and closed: the producer has MaxConns connections, all busy
	connsIdleClosed  = "idle"     // a producer at its bound opened another: its longest-idle one was closed
)

// connLimits bounds the connections of the producer API. A connection
// counts against its source address from accept until its first request
// authenticates, then against its producer (identified by pin or token,
// counted by name) until it closes. Past max, a new connection from the
// address is closed before its TLS handshake. A producer with max
// connections that opens another loses its longest-idle one (no request
// in flight: a client that makes a new connection per call, leaving the
// old ones open, keeps working), or, when all are busy, the new one gets
// 429 and is closed after the answer. Each is counted and logged,
// rate-limited.
type connLimits struct {
	max     int
	refused *prometheus.CounterVec
	open    *prometheus.GaugeVec
	log     *slog.Logger
	logged  ratelog.Limiter

	mu         sync.Mutex // guards the two maps and every connSlot's state
	byAddr     map[netip.Addr]int
	byProducer map[string]map[*connSlot]struct{}
}

func newConnLimits(max int, reg prometheus.Registerer, log *slog.Logger) (*connLimits, error) {
	if max <= 0 {
		max = DefaultMaxConns
	}
	l := &connLimits{
		max: max, log: log, logged: ratelog.Limiter{Every: refusalLogEvery},
		byAddr: map[netip.Addr]int{}, byProducer: map[string]map[*connSlot]struct{}{},
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_producer_conns_refused_total",
			Help: "Producer API connections refused or closed by the per-peer bound, by reason: address (closed before TLS: too many unauthenticated connections from one address), producer (429: a producer's connections all busy), idle (a producer's longest-idle connection closed for a new one).",
		}, []string{"reason"}),
		open: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "relay_producer_conns",
			Help: "Producer API connections open, by state: unauthenticated (counted per source address) or authenticated (counted per producer).",
		}, []string{"state"}),
	}
	for _, r := range []string{connsPerAddress, connsPerProducer, connsIdleClosed} {
		l.refused.WithLabelValues(r)
	}
	for _, s := range []string{"unauthenticated", "authenticated"} {
		l.open.WithLabelValues(s)
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{l.refused, l.open} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering producer API connection metrics: %w", err)
			}
		}
	}
	return l, nil
}

// connSlot is what one connection holds of the bound. Its fields are
// guarded by l.mu.
type connSlot struct {
	l        *connLimits
	conn     net.Conn // the TCP connection, closed to evict it
	addr     netip.Addr
	producer string    // "" until authenticated
	active   int       // requests in flight
	used     time.Time // when the last request ended or began
	released bool
}

// admit takes a place for a new connection from addr, if there is one.
func (l *connLimits) admit(c net.Conn, addr netip.Addr) (*connSlot, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byAddr[addr] >= l.max {
		return nil, false
	}
	l.byAddr[addr]++
	l.open.WithLabelValues("unauthenticated").Inc()
	return &connSlot{l: l, conn: c, addr: addr}, true
}

// begin counts a request of producer on the connection: at its first,
// the connection moves from its address's count to producer's, evicting
// producer's longest-idle connection when it has max. It reports false
// when producer's max connections are all busy; else done ends the
// request.
func (s *connSlot) begin(producer string) (done func(), ok bool) {
	l := s.l
	var evict *connSlot
	l.mu.Lock()
	if s.producer == "" && !s.released {
		set := l.byProducer[producer]
		if len(set) >= l.max {
			for o := range set {
				if o.active == 0 && (evict == nil || o.used.Before(evict.used)) {
					evict = o
				}
			}
			if evict == nil {
				l.mu.Unlock()
				return nil, false
			}
			delete(set, evict)
			evict.released = true
			l.open.WithLabelValues("authenticated").Dec()
		}
		if set == nil {
			set = map[*connSlot]struct{}{}
			l.byProducer[producer] = set
		}
		l.decAddr(s.addr)
		set[s] = struct{}{}
		s.producer = producer
		l.open.WithLabelValues("unauthenticated").Dec()
		l.open.WithLabelValues("authenticated").Inc()
	}
	s.active++
	s.used = time.Now()
	l.mu.Unlock()
	if evict != nil {
		_ = evict.conn.Close()
		l.refuse(connsIdleClosed, producer, "producer", producer, "closed", evict.conn.RemoteAddr().String())
	}
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		s.active--
		s.used = time.Now()
	}, true
}

// release gives the connection's place back; once.
func (s *connSlot) release() {
	l := s.l
	l.mu.Lock()
	defer l.mu.Unlock()
	if s.released {
		return
	}
	s.released = true
	if s.producer == "" {
		l.decAddr(s.addr)
		l.open.WithLabelValues("unauthenticated").Dec()
		return
	}
	set := l.byProducer[s.producer]
	delete(set, s)
	if len(set) == 0 {
		delete(l.byProducer, s.producer)
	}
	l.open.WithLabelValues("authenticated").Dec()
}

func (l *connLimits) decAddr(a netip.Addr) {
	if l.byAddr[a]--; l.byAddr[a] <= 0 {
		delete(l.byAddr, a)
	}
}

// refuse counts and logs (rate-limited per address or producer) a
// connection refused for reason.
func (l *connLimits) refuse(reason, who string, attrs ...any) {
	l.refused.WithLabelValues(reason).Inc()
	ok, suppressed := l.logged.Allow(reason+" "+who, time.Now())
	if !ok {
		return
	}
	attrs = append(attrs, "reason", reason, "max", l.max, "suppressed", suppressed)
	l.log.Warn("refused a producer API connection: too many open", attrs...)
}

// limitedListener admits connections through a connLimits.
type limitedListener struct {
	net.Listener
	l *connLimits
}

// Accept implements net.Listener: a connection past its address's bound
// is closed before anything is read from it, and the next one is waited
// for.
func (ln limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := ln.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ap, _ := netip.ParseAddrPort(c.RemoteAddr().String())
		addr := ap.Addr().Unmap()
		slot, ok := ln.l.admit(c, addr)
		if !ok {
			_ = c.Close()
			ln.l.refuse(connsPerAddress, addr.String(), "remote", addr.String())
			continue
		}
		return &slotConn{Conn: c, slot: slot}, nil
	}
}

// slotConn is an admitted connection; closing it gives its place back.
type slotConn struct {
	net.Conn
	slot *connSlot
	once sync.Once
}

func (c *slotConn) Close() error {
	c.once.Do(c.slot.release)
	return c.Conn.Close()
}

type slotKey struct{}

// connContext gives each connection's requests its slot
// (http.Server.ConnContext).
func connContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if sc, ok := c.(*slotConn); ok {
		return context.WithValue(ctx, slotKey{}, sc.slot)
	}
	return ctx
}

// admitProducer counts the request against its connection's producer
// (connSlot.begin), or answers 429 and closes the connection after the
// answer (HTTP/1.1, and a GOAWAY on HTTP/2). done ends the request. A
// server without bounds (a handler served some other way) admits
// everything.
func admitProducer(w http.ResponseWriter, r *http.Request, producer string) (done func(), ok bool) {
	slot, _ := r.Context().Value(slotKey{}).(*connSlot)
	if slot == nil {
		return func() {}, true
	}
	if done, ok := slot.begin(producer); ok {
		return done, true
	}
	slot.l.refuse(connsPerProducer, producer, "producer", producer, "remote", r.RemoteAddr)
	w.Header().Set("Connection", "close")
	w.Header().Set("Retry-After", "1")
	writeError(w, http.StatusTooManyRequests, ErrorDetail{Code: "too_many_connections",
		Message: fmt.Sprintf("producer %s has %d connections open to relay, all busy, its bound (relay serve --max-producer-conns); make its calls share connections", producer, slot.l.max)})
	return nil, false
}
