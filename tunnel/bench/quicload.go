package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/keys"
)

// QUIC load for the production shape: relay and bunny speak QUIC through
// the tunnel, so "full load" is TCP streams and many QUIC flows at once.
// The sink in namespace B shares the UDP echo's socket: quic-go answers
// QUIC and hands everything else (the 64-byte round-trip probes, whose
// first byte is zero) to the echo.

const (
	quicALPN       = "tunnel-bench"
	quicServerName = "bench-sink"
	// quicBulkPayload is the payload of the QUIC bulk measurement: one
	// stream per payload, acknowledged by the sink.
	quicBulkPayload = 1 << 20
)

// quicSink counts the bytes of every QUIC stream it is sent and echoes
// non-QUIC datagrams.
type quicSink struct {
	tr       *quic.Transport
	ln       *quic.Listener
	client   *tls.Config // what a client needs to reach it
	received atomic.Int64
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func startQUICSink(pc net.PacketConn) (*quicSink, error) {
	certPEM, keyPEM, err := keys.GenerateIdentity(quicServerName)
	if err != nil {
		return nil, err
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("loading the QUIC sink's certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("loading the QUIC sink's certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(leaf)
	s := &quicSink{tr: &quic.Transport{Conn: pc},
		client: &tls.Config{RootCAs: roots, ServerName: quicServerName, NextProtos: []string{quicALPN}, MinVersion: tls.VersionTLS13}}
	s.ln, err = s.tr.Listen(&tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{quicALPN}, MinVersion: tls.VersionTLS13},
		&quic.Config{MaxIdleTimeout: 30 * time.Second, MaxIncomingStreams: 1 << 16})
	if err != nil {
		return nil, fmt.Errorf("starting the QUIC sink: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() { s.echo(ctx) })
	s.wg.Go(func() { s.accept(ctx) })
	return s, nil
}

// echo answers the non-QUIC datagrams: the round-trip probes.
func (s *quicSink) echo(ctx context.Context) {
	buf := make([]byte, 2048)
	for {
		n, from, err := s.tr.ReadNonQUICPacket(ctx, buf)
		if err != nil {
			return
		}
		_, _ = s.tr.WriteTo(buf[:n], from)
	}
}

func (s *quicSink) accept(ctx context.Context) {
	var conns sync.WaitGroup
	defer conns.Wait()
	for {
		c, err := s.ln.Accept(ctx)
		if err != nil {
			return
		}
		conns.Go(func() { s.serve(ctx, c) })
	}
}

// serve reads each stream to its end and answers one byte, which tells
// a bulk client its payload arrived whole.
func (s *quicSink) serve(ctx context.Context, c *quic.Conn) {
	defer c.CloseWithError(0, "")
	buf := make([]byte, 32<<10)
	for {
		st, err := c.AcceptStream(ctx)
		if err != nil {
			return
		}
		for {
			n, err := st.Read(buf)
			s.received.Add(int64(n))
			if errors.Is(err, io.EOF) {
				_, _ = st.Write([]byte{1})
				_ = st.Close()
				break
			}
			if err != nil {
				st.CancelRead(0)
				break
			}
		}
	}
}

func (s *quicSink) Close() {
	s.cancel()
	s.ln.Close()
	s.wg.Wait()
}

// quicDialer makes a UDP socket where the clients run (namespace A).
type quicDialer func() (net.PacketConn, error)

// dialQUIC opens one QUIC connection to addr from a socket of its own, so
// that each is a flow of its own through the gateway's UDP forward rule.
func dialQUIC(ctx context.Context, listen quicDialer, addr string, tlsConf *tls.Config) (*quic.Conn, func(), error) {
	raddr, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		return nil, nil, err
	}
	pc, err := listen()
	if err != nil {
		return nil, nil, err
	}
	tr := &quic.Transport{Conn: pc}
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	c, err := tr.Dial(dctx, raddr, tlsConf, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		tr.Close()
		pc.Close()
		return nil, nil, fmt.Errorf("dialing QUIC through %s: %w", addr, err)
	}
	return c, func() {
		c.CloseWithError(0, "")
		tr.Close()
		pc.Close()
	}, nil
}

// quicFlows is a running QUIC load: n connections, each writing one
// stream as fast as it can until stopped.
type quicFlows struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closes []func()
}

// startQUICFlows dials n connections (all before any writes, so that a
// failure to connect is reported, not hidden in the load) and starts
// their writers.
func startQUICFlows(ctx context.Context, listen quicDialer, addr string, tlsConf *tls.Config, n int) (*quicFlows, error) {
	ctx, cancel := context.WithCancel(ctx)
	f := &quicFlows{cancel: cancel}
	var conns []*quic.Conn
	for range n {
		c, closeConn, err := dialQUIC(ctx, listen, addr, tlsConf)
		if err != nil {
			f.Stop()
			return nil, fmt.Errorf("QUIC flow %d of %d: %w", len(conns)+1, n, err)
		}
		f.closes = append(f.closes, closeConn)
		conns = append(conns, c)
	}
	buf := make([]byte, 32<<10) // only read by the writers
	for _, c := range conns {
		f.wg.Go(func() {
			st, err := c.OpenStreamSync(ctx)
			if err != nil {
				return
			}
			for ctx.Err() == nil {
				if _, err := st.Write(buf); err != nil {
					return
				}
			}
			st.CancelWrite(0)
		})
	}
	return f, nil
}

// Stop ends every flow and waits for its writer.
func (f *quicFlows) Stop() {
	f.cancel()
	for _, c := range f.closes {
		c()
	}
	f.wg.Wait()
}

// quicBulk sends quicBulkPayload payloads over one connection for d,
// one stream each, each acknowledged by the sink, and returns the
// payload bytes per second.
func quicBulk(ctx context.Context, listen quicDialer, addr string, tlsConf *tls.Config, d time.Duration) (float64, error) {
	c, closeConn, err := dialQUIC(ctx, listen, addr, tlsConf)
	if err != nil {
		return 0, err
	}
	defer closeConn()
	payload := make([]byte, quicBulkPayload)
	ack := make([]byte, 1)
	start := time.Now()
	sent := 0
	for time.Since(start) < d {
		st, err := c.OpenStreamSync(ctx)
		if err != nil {
			return 0, fmt.Errorf("QUIC bulk: opening a stream: %w", err)
		}
		_ = st.SetDeadline(time.Now().Add(30 * time.Second))
		if _, err := st.Write(payload); err != nil {
			return 0, fmt.Errorf("QUIC bulk: writing a payload: %w", err)
		}
		_ = st.Close()
		if _, err := io.ReadFull(st, ack); err != nil {
			return 0, fmt.Errorf("QUIC bulk: waiting for the sink's acknowledgement: %w", err)
		}
		sent++
	}
	return float64(sent*quicBulkPayload) / time.Since(start).Seconds(), nil
}
