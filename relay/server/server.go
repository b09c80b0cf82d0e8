package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/internal/ratelog"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Options configure a Server.
type Options struct {
	Queue queue.Backend
	// Identity is relay's own QUIC identity; workers pin it.
	Identity keys.Identity
	// Workers returns the workers configuration in force (for example
	// auth.Watcher.Config). It is consulted on every handshake and call.
	Workers func() *auth.Config
	QUIC    proto.QUICOptions
	// RequestTimeout bounds how long a call's request frame may take to
	// arrive, and its response to be written (10s).
	RequestTimeout time.Duration
	// DrainTimeout is how long Serve, once its context ends, lets calls in
	// flight finish before closing connections (5s).
	DrainTimeout time.Duration
	// ReadBudget is how many bytes of request frames all connections
	// together may hold while being read and served (64 MiB). A frame
	// waits for its share before its body is read; one that cannot get it
	// within RequestTimeout is refused (read_budget).
	ReadBudget int
	// MaxConnsPerIdentity bounds one worker key's connections (8); past
	// it a connection is closed OVERLOADED (connection_limit).
	MaxConnsPerIdentity int
	// MaxLargeCalls bounds one connection's calls in flight whose request
	// frame is over 64 KiB, such as a Complete with a large result (16);
	// past it the stream is reset OVERLOADED (large_calls).
	MaxLargeCalls int
	Logger        *slog.Logger
	// Registerer receives the server's metrics; nil registers none.
	Registerer prometheus.Registerer
	// ResetKey is the QUIC stateless-reset key; nil derives it from the
	// identity's private key. Replicas behind one address need the same
	// key, so a worker learns at once that its connection is gone.
	ResetKey *quic.StatelessResetKey
}

// Defaults of the per-peer bounds.
const (
	DefaultReadBudget          = 64 << 20
	DefaultMaxConnsPerIdentity = 8
	DefaultMaxLargeCalls       = 16
	// largeFrame is the size past which a request frame counts against
	// MaxLargeCalls: anything but a Complete or Fail with a big body.
	largeFrame = 64 << 10
)

// Server serves workers over QUIC.
type Server struct {
	opts Options
	q    queue.Backend
	log  *slog.Logger
	m    *metrics

	budget   *byteBudget
	sessions *leaseSessions

	mu       sync.Mutex
	conns    map[*quic.Conn]*connState
	perPin   map[keys.Pin]int // connections of each worker key
	draining bool             // no new calls once set
	calls    sync.WaitGroup   // calls in flight
	addr     net.Addr
	ready    chan struct{}

	// refusals limits the refused-worker lines: a worker retrying with a
	// key relay does not know is logged once per refusalLogEvery.
	refusals ratelog.Limiter
}

// refusalLogEvery is the shortest time between two lines about refusing
// the same key.
const refusalLogEvery = 10 * time.Second

// logRefusal logs a refused worker, at most once per refusalLogEvery for
// one pin, with the count of refusals left out since the last line. Every
// refusal is counted in relay_refused_total whether logged or not.
func (s *Server) logRefusal(pin keys.Pin, msg string, attrs ...any) {
	ok, suppressed := s.refusals.Allow(pin.String(), time.Now())
	if !ok {
		return
	}
	s.log.Warn(msg, append([]any{"pin", pin.String(), "suppressed", suppressed, "every", refusalLogEvery.String()}, attrs...)...)
}

type connState struct {
	pin    keys.Pin
	worker string
	remote net.Addr
	since  time.Time
	large  atomic.Int32 // calls in flight with a large request frame
}

// Conn is one worker connection open now.
type Conn struct {
	// Worker is the worker's name in the workers file, Pin its key.
	Worker string
	Pin    keys.Pin
	// Remote is where the connection comes from (a gateway's address when
	// it comes through the tunnel).
	Remote net.Addr
	// Since is when the connection was accepted.
	Since time.Time
}

// Connections are the worker connections open now, oldest first.
func (s *Server) Connections() []Conn {
	s.mu.Lock()
	out := make([]Conn, 0, len(s.conns))
	for _, cs := range s.conns {
		out = append(out, Conn{Worker: cs.worker, Pin: cs.pin, Remote: cs.remote, Since: cs.since})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b Conn) int { return a.Since.Compare(b.Since) })
	return out
}

// New checks opts and builds a Server.
func New(opts Options) (*Server, error) {
	if opts.Queue == nil {
		return nil, errors.New("relay server: no queue")
	}
	if opts.Identity.Leaf == nil {
		return nil, errors.New("relay server: no identity (certificate and key)")
	}
	if opts.Workers == nil {
		return nil, errors.New("relay server: no workers configuration")
	}
	if err := opts.QUIC.Validate(); err != nil {
		return nil, fmt.Errorf("relay server: %w", err)
	}
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = 10 * time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Second
	}
	if opts.ReadBudget <= 0 {
		opts.ReadBudget = DefaultReadBudget
	}
	opts.ReadBudget = max(opts.ReadBudget, proto.MaxRequestFrame)
	if opts.MaxConnsPerIdentity <= 0 {
		opts.MaxConnsPerIdentity = DefaultMaxConnsPerIdentity
	}
	if opts.MaxLargeCalls <= 0 {
		opts.MaxLargeCalls = DefaultMaxLargeCalls
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Server{
		opts:     opts,
		q:        opts.Queue,
		log:      opts.Logger,
		m:        m,
		conns:    map[*quic.Conn]*connState{},
		perPin:   map[keys.Pin]int{},
		budget:   newByteBudget(opts.ReadBudget),
		sessions: newLeaseSessions(),
		ready:    make(chan struct{}),

		refusals: ratelog.Limiter{Every: refusalLogEvery},
	}, nil
}

// ListenAndServe serves on a UDP socket bound to addr until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", addr)
	if err != nil {
		return fmt.Errorf("relay server: listening on %s: %w", addr, err)
	}
	defer pc.Close()
	return s.Serve(ctx, pc)
}

// Addr is the address Serve listens on, once it has started.
func (s *Server) Addr() net.Addr {
	<-s.ready
	return s.addr
}

// Serve serves workers on pc until ctx ends, then drains: long polls
// return, calls in flight get DrainTimeout to finish, and connections
// close with SHUTTING_DOWN. It does not close pc.
func (s *Server) Serve(ctx context.Context, pc net.PacketConn) error {
	tr := &quic.Transport{Conn: pc, StatelessResetKey: s.resetKey()}
	defer tr.Close()
	ln, err := tr.Listen(s.tlsConfig(), s.opts.QUIC.Config(true))
	if err != nil {
		return fmt.Errorf("relay server: %w", err)
	}
	s.addr = ln.Addr()
	close(s.ready)
	s.log.Info("serving workers over QUIC", "addr", ln.Addr().String(), "alpn", proto.ALPN, "pin", s.opts.Identity.Pin().String())

	// Calls run under callCtx, which ends when ctx does: long polls stop
	// waiting at once and answer SHUTTING_DOWN.
	callCtx, stopCalls := context.WithCancel(context.Background())
	defer stopCalls()
	go func() {
		<-ctx.Done()
		_ = ln.Close()
	}()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			break
		}
		go s.handleConn(callCtx, conn)
	}
	// Drain.
	s.mu.Lock()
	s.draining = true
	s.mu.Unlock()
	stopCalls()
	drained := make(chan struct{})
	go func() { s.calls.Wait(); close(drained) }()
	select {
	case <-drained:
	case <-time.After(s.opts.DrainTimeout):
		s.log.Warn("calls still in flight after the drain timeout; closing anyway", "timeout", s.opts.DrainTimeout.String())
	}
	s.closeAll(proto.Code_SHUTTING_DOWN, "relay is shutting down")
	return nil
}

// Revoke closes the connections whose pin the workers configuration no
// longer lists, with CREDENTIALS_REVOKED. Call it after a reload.
func (s *Server) Revoke() {
	c := s.opts.Workers()
	s.mu.Lock()
	var gone []*quic.Conn
	for conn, st := range s.conns {
		if _, ok := c.Lookup(st.pin); !ok {
			gone = append(gone, conn)
			s.log.Info("closing a connection whose key was removed from the workers file", "worker", st.worker, "pin", st.pin.String())
		}
	}
	s.mu.Unlock()
	for _, conn := range gone {
		s.m.refused.WithLabelValues("credentials_revoked").Inc()
		_ = conn.CloseWithError(proto.Code_CREDENTIALS_REVOKED.AppCode(), "this key was removed from relay's workers file; reconnect with a current one")
	}
}

func (s *Server) closeAll(code proto.Code, msg string) {
	s.mu.Lock()
	conns := make([]*quic.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		_ = c.CloseWithError(code.AppCode(), msg)
	}
}

// tlsConfig checks the worker's pin during the handshake; the per-client
// config lets the refusal log name the address it came from.
func (s *Server) tlsConfig() *tls.Config {
	base := proto.ServerTLS(s.opts.Identity, func(keys.Pin) error { return errors.New("no per-client configuration") })
	base.GetConfigForClient = func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		remote := "unknown"
		if hello.Conn != nil {
			remote = hello.Conn.RemoteAddr().String()
		}
		return proto.ServerTLS(s.opts.Identity, func(p keys.Pin) error {
			if _, ok := s.opts.Workers().Lookup(p); !ok {
				s.m.refused.WithLabelValues("unknown_identity").Inc()
				s.logRefusal(p, "refused a worker: its key is not in the workers file", "remote", remote,
					"hint", "add the worker's pin (tunnel keys pin identity.crt) to relay's workers file, or fix the worker's key")
				return fmt.Errorf("identity %s is not a known worker", p)
			}
			return nil
		}), nil
	}
	return base
}

// resetKey derives the QUIC stateless reset key from relay's private key,
// so that after a restart (even kill -9) workers learn at their next
// packet that their connection is gone.
func (s *Server) resetKey() *quic.StatelessResetKey {
	if s.opts.ResetKey != nil {
		return s.opts.ResetKey
	}
	der, err := x509.MarshalPKCS8PrivateKey(s.opts.Identity.Certificate.PrivateKey)
	if err != nil {
		return nil
	}
	k := quic.StatelessResetKey(sha256.Sum256(append([]byte("relay/1 stateless reset key\x00"), der...)))
	return &k
}

func (s *Server) handleConn(ctx context.Context, conn *quic.Conn) {
	pin, err := proto.PeerPin(conn.ConnectionState().TLS)
	if err != nil {
		_ = conn.CloseWithError(proto.Code_UNAUTHORIZED.AppCode(), "no client certificate")
		return
	}
	w, ok := s.opts.Workers().Lookup(pin)
	if !ok { // removed between the handshake and now
		s.m.refused.WithLabelValues("credentials_revoked").Inc()
		s.logRefusal(pin, "refused a worker: its key was removed from the workers file during the handshake", "remote", conn.RemoteAddr().String())
		_ = conn.CloseWithError(proto.Code_CREDENTIALS_REVOKED.AppCode(), "this key is not in relay's workers file")
		return
	}
	log := s.log.With("worker", w.Name, "remote", conn.RemoteAddr().String())
	cs := &connState{pin: pin, worker: w.Name, remote: conn.RemoteAddr(), since: time.Now()}
	s.mu.Lock()
	if s.perPin[pin] >= s.opts.MaxConnsPerIdentity {
		s.mu.Unlock()
		s.m.refused.WithLabelValues("connection_limit").Inc()
		s.logRefusal(pin, "refused a connection: the worker key has too many", "worker", w.Name, "remote", conn.RemoteAddr().String(), "limit", s.opts.MaxConnsPerIdentity)
		_ = conn.CloseWithError(proto.Code_OVERLOADED.AppCode(), fmt.Sprintf("this key already has %d connections to relay", s.opts.MaxConnsPerIdentity))
		return
	}
	s.perPin[pin]++
	s.conns[conn] = cs
	s.mu.Unlock()
	s.m.connections.Inc()
	log.Info("worker connected", "pin", pin.String())
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		if s.perPin[pin]--; s.perPin[pin] <= 0 {
			delete(s.perPin, pin)
		}
		s.mu.Unlock()
		s.m.connections.Dec()
		log.Info("worker disconnected", "reason", context.Cause(conn.Context()))
	}()
	for {
		str, err := conn.AcceptStream(conn.Context())
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.draining {
			s.mu.Unlock()
			str.CancelRead(proto.Code_SHUTTING_DOWN.StreamCode())
			str.CancelWrite(proto.Code_SHUTTING_DOWN.StreamCode())
			continue
		}
		s.calls.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.calls.Done()
			s.handleStream(ctx, cs, str, log)
		}()
	}
}
