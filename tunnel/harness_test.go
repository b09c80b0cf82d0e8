package tunnel_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/echo"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
	"github.com/tunnel-dev/tunnel/tunnel/tunneltest"
)

// pair is two gateways on loopback: "eks" exposes services and dials out;
// "aks" listens for WireGuard and forwards local ports to eks's exposed
// ones, as the default manifests deploy them.
type pair struct {
	eks, aks       *tunnel.Gateway
	eksKey, aksKey keys.PrivateKey
	tcpEcho        string // echo service addresses behind eks
	udpEcho        string
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return testutil.Logger(t)
}

func mustParse(t testing.TB, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatalf("config:\n%s\n%v", yaml, err)
	}
	return c
}

func startGateway(t testing.TB, c *config.Config, key keys.PrivateKey) *tunnel.Gateway {
	t.Helper()
	return startTuned(t, c, key, tunnel.Tuning{})
}

func startTuned(t testing.TB, c *config.Config, key keys.PrivateKey, tuning tunnel.Tuning) *tunnel.Gateway {
	t.Helper()
	gw := &tunnel.Gateway{PrivateKey: &key, Logger: testLogger(t), Tuning: tuning}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Start(ctx, c); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}

// pairOpts adjust the pair's configs.
type pairOpts struct {
	eksPeers  string // YAML list items appended to eks's peers
	aksLimits string // YAML flow mapping for aks's limits
	eksLimits string
	// eksListens gives eks a listening port, so that third parties can
	// reach it (a dial-only gateway hears only its peer).
	eksListens bool
	// tuning applies to both gateways.
	tuning tunnel.Tuning
}

// startPair starts both gateways.
func startPair(t testing.TB, o pairOpts) *pair {
	t.Helper()
	return startPairWith(t, o, tcpEchoServer(t))
}

// startPairWithTarget starts a pair whose relay-tcp rule reaches target.
func startPairWithTarget(t testing.TB, target string) *pair {
	t.Helper()
	return startPairWith(t, pairOpts{}, target)
}

func startPairWith(t testing.TB, o pairOpts, tcpTarget string) *pair {
	t.Helper()
	p := &pair{eksKey: testutil.PrivateKey(t), aksKey: testutil.PrivateKey(t)}
	p.tcpEcho = tcpTarget
	p.udpEcho = udpEchoServer(t)
	aksCfg := mustParse(t, fmt.Sprintf(`
interface:
  name: aks
  privateKeyFile: unused
  listenPort: 0
  addresses: [10.99.0.2]
  uapiDir: "-"
peers:
  - name: eks
    publicKey: %s
    allowedIPs: [10.99.0.1/32]
forward:
  - {name: relay-udp, protocol: udp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:7000"}
  - {name: relay-tcp, protocol: tcp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:8000"}
  - {name: unexposed, protocol: tcp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:8001"}
limits: %s
admin: {listen: "127.0.0.1:0"}
`, p.eksKey.Public(), orEmpty(o.aksLimits)))
	p.aks = startTuned(t, aksCfg, p.aksKey, o.tuning)
	listen := ""
	if o.eksListens {
		listen = fmt.Sprintf("listenPort: %d", freeUDPPort(t))
	}
	eksCfg := mustParse(t, fmt.Sprintf(`
interface:
  name: eks
  privateKeyFile: unused
  %s
  addresses: [10.99.0.1]
  uapiDir: "-"
peers:
  - name: aks
    publicKey: %s
    endpoint: 127.0.0.1:%d
    persistentKeepalive: 25s
    allowedIPs: [10.99.0.2/32]
%s
expose:
  - {name: relay-udp, protocol: udp, port: 7000, target: "%s", peers: [aks]}
  - {name: relay-tcp, protocol: tcp, port: 8000, target: "%s", peers: [aks]}
limits: %s
admin: {listen: "127.0.0.1:0"}
`, listen, p.aksKey.Public(), p.aks.ListenPort(), o.eksPeers, p.udpEcho, p.tcpEcho, orEmpty(o.eksLimits)))
	p.eks = startTuned(t, eksCfg, p.eksKey, o.tuning)
	return p
}

// dialExposed dials eks's relay-tcp port from aks, as a test's proof
// that the tunnel is up. When it fails, both gateways' status goes in the
// log: which side stopped counting bytes, drops or handshakes says where
// the SYN was lost.
func (p *pair) dialExposed(t testing.TB, within time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	c, err := p.aks.Dial(ctx, "tcp", "10.99.0.1:8000")
	if err != nil {
		for _, g := range []*tunnel.Gateway{p.aks, p.eks} {
			st := g.Status()
			b, _ := json.Marshal(st)
			t.Logf("status of %s: %s", st.Name, b)
		}
		t.Fatalf("exposed port: %v", err)
	}
	c.Close()
}

func (p *pair) forward(t testing.TB, name string) string {
	t.Helper()
	ap, ok := p.aks.ForwardAddr(name)
	if !ok {
		t.Fatalf("no forward rule %q", name)
	}
	return ap.String()
}

// tcpEchoServer echoes every connection until EOF, then half-closes.
func tcpEchoServer(t testing.TB) string { return serveTCP(t, echo.TCP) }

// sinkServer reads each connection to EOF, then writes back how many bytes
// it read.
func sinkServer(t testing.TB) string { return serveTCP(t, echo.Sink) }

func serveTCP(t testing.TB, serve func(net.Listener)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { serve(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// udpEchoServer echoes each datagram to its sender.
func udpEchoServer(t testing.TB) string { return tunneltest.UDPEcho(t) }

// udpRoundTrip sends msg and waits for a reply, resending up to tries
// times, wait apart; the first datagram back is the reply.
func udpRoundTrip(c net.Conn, msg []byte, tries int, wait time.Duration) ([]byte, error) {
	return udpExchange(c, msg, tries, wait, func([]byte) bool { return true })
}

// udpEcho is udpRoundTrip for a flow that sends several messages in turn
// to an echo: a reply that is not msg is the late echo of an earlier
// message that was sent twice (its first echo was slow, not lost), and is
// skipped rather than taken for msg's answer.
func udpEcho(c net.Conn, msg []byte, tries int, wait time.Duration) ([]byte, error) {
	return udpExchange(c, msg, tries, wait, func(b []byte) bool { return bytes.Equal(b, msg) })
}

// udpExchange sends msg up to tries times, wait apart, and returns the
// first datagram back that accept takes.
func udpExchange(c net.Conn, msg []byte, tries int, wait time.Duration, accept func([]byte) bool) ([]byte, error) {
	buf := make([]byte, 65535)
	var last error
	for range tries {
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		_ = c.SetReadDeadline(time.Now().Add(wait))
		for {
			n, err := c.Read(buf)
			if err != nil {
				last = err
				break
			}
			if accept(buf[:n]) {
				return buf[:n], nil
			}
		}
		var ne net.Error
		if !errors.As(last, &ne) || !ne.Timeout() {
			return nil, last
		}
	}
	return nil, last
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || err != nil && strings.Contains(err.Error(), "timed out")
}

func orEmpty(s string) string {
	if s == "" {
		return "{}"
	}
	return s
}

// startStranger starts a gateway at address addr with key k that has eks
// (at eks's WireGuard port) as its only peer, reaching eks's address and
// also the extra prefixes given (to try routing through eks).
func startStranger(t testing.TB, p *pair, k keys.PrivateKey, addr string, extraAllowed string) *tunnel.Gateway {
	t.Helper()
	c := mustParse(t, fmt.Sprintf(`
interface:
  name: stranger
  privateKeyFile: unused
  addresses: [%s]
  uapiDir: "-"
peers:
  - name: eks
    publicKey: %s
    endpoint: 127.0.0.1:%d
    allowedIPs: [10.99.0.1/32%s]
limits: {tcpDialTimeout: 2s}
admin: {listen: "-"}
`, addr, p.eksKey.Public(), p.eks.ListenPort(), extraAllowed))
	return startGateway(t, c, k)
}

// freeUDPPort finds a UDP port nothing is using at the moment.
func freeUDPPort(t testing.TB) int { return tunneltest.FreeUDPPort(t) }

// tunnelGateway starts a gateway expecting failure, without the cleanup
// startGateway registers.
type tunnelGateway struct {
	cfg *config.Config
	key keys.PrivateKey
}

func (g *tunnelGateway) start(t testing.TB) error {
	gw := &tunnel.Gateway{PrivateKey: &g.key, Logger: testLogger(t)}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := gw.Start(ctx, g.cfg)
	if err == nil {
		gw.Close()
	}
	return err
}

// sendEcho connects to a TCP echo through addr and writes msg; expectEcho
// then half-closes and checks that msg comes back.
func sendEcho(t *testing.T, addr string, msg []byte) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	return c
}

// expectEcho half-closes c (the echo server sees EOF, echoes and closes)
// and checks that msg came back; hint says what a read error means.
func expectEcho(t *testing.T, c net.Conn, msg []byte, hint string) {
	t.Helper()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v%s", err, hint)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("echo = %q, want %q", got, msg)
	}
}
