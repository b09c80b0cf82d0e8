package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// haSide is one forwarding gateway ("aks") with two upstream gateways
// ("eks-a" at 10.99.0.1, "eks-b" at 10.99.0.11), each with its own key,
// both exposing the same services and dialling aks with 1 s keepalives.
type haSide struct {
	aks, eksA, eksB *tunnel.Gateway
	eksAKey         keys.PrivateKey
	log             *testutil.Buffer // aks's log
}

func startHA(t *testing.T, udpTarget, tcpTarget string) *haSide {
	t.Helper()
	aksKey, aKey, bKey := testutil.PrivateKey(t), testutil.PrivateKey(t), testutil.PrivateKey(t)
	h := &haSide{log: &testutil.Buffer{}, eksAKey: aKey}
	aksCfg := mustParse(t, fmt.Sprintf(`
interface:
  name: aks
  privateKeyFile: unused
  addresses: [10.99.0.2]
  uapiDir: "-"
peers:
  - {name: eks-a, publicKey: %s, persistentKeepalive: 1s, allowedIPs: [10.99.0.1/32]}
  - {name: eks-b, publicKey: %s, persistentKeepalive: 1s, allowedIPs: [10.99.0.11/32]}
forward:
  - name: relay-udp
    protocol: udp
    listen: "127.0.0.1:0"
    upstreams: [{peer: eks-a, to: "10.99.0.1:7000"}, {peer: eks-b, to: "10.99.0.11:7000"}]
  - name: relay-tcp
    protocol: tcp
    listen: "127.0.0.1:0"
    upstreams: [{peer: eks-a, to: "10.99.0.1:8000"}, {peer: eks-b, to: "10.99.0.11:8000"}]
admin: {listen: "127.0.0.1:0"}
`, aKey.Public(), bKey.Public()))
	h.aks = &tunnel.Gateway{PrivateKey: &aksKey, Logger: h.log.Logger()}
	startConfigured(t, h.aks, aksCfg)
	eks := func(name, addr string, k keys.PrivateKey) *tunnel.Gateway {
		return startGateway(t, mustParse(t, fmt.Sprintf(`
interface: {name: %s, privateKeyFile: unused, addresses: [%s], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}
expose:
  - {name: relay-udp, protocol: udp, port: 7000, target: "%s", peers: [aks]}
  - {name: relay-tcp, protocol: tcp, port: 8000, target: "%s", peers: [aks]}
admin: {listen: "-"}
`, name, addr, aksKey.Public(), h.aks.ListenPort(), udpTarget, tcpTarget)), k)
	}
	h.eksA = eks("eks-a", "10.99.0.1", aKey)
	h.eksB = eks("eks-b", "10.99.0.11", bKey)
	testutil.Eventually(t, 20*time.Second, "both upstreams healthy, eks-a in use", func() bool {
		r := rule(t, h.aks, "relay-udp")
		return len(r.Upstreams) == 2 && r.Upstreams[0].Healthy && r.Upstreams[1].Healthy && r.Upstream == "eks-a 10.99.0.1:7000"
	})
	return h
}

// startConfigured starts gw, set up by the caller, with c.
func startConfigured(t testing.TB, gw *tunnel.Gateway, c *config.Config) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Start(ctx, c); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() { gw.Close() })
}

// echoTimes sends a datagram every 20 ms on c and records when each echo
// came back, until stop is closed.
type echoTimes struct {
	mu    sync.Mutex
	times []time.Time
}

func (e *echoTimes) run(c net.Conn, stop <-chan struct{}) {
	go sendEvery(c, 20*time.Millisecond, "ping", stop)
	buf := make([]byte, 64)
	for {
		select {
		case <-stop:
			return
		default:
		}
		_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if n, err := c.Read(buf); err == nil && string(buf[:n]) == "ping" {
			e.mu.Lock()
			e.times = append(e.times, time.Now())
			e.mu.Unlock()
		}
	}
}

// sendEvery writes msg to w every interval until stop is closed or a
// write fails.
func sendEvery(w io.Writer, every time.Duration, msg string, stop <-chan struct{}) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if _, err := w.Write([]byte(msg)); err != nil {
				return
			}
		}
	}
}

func (e *echoTimes) count() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.times)
}

// longestGap is the longest time between two echoes.
func (e *echoTimes) longestGap() time.Duration {
	e.mu.Lock()
	defer e.mu.Unlock()
	var gap time.Duration
	for i := 1; i < len(e.times); i++ {
		gap = max(gap, e.times[i].Sub(e.times[i-1]))
	}
	return gap
}

// An upstream gateway closed mid-flow: the UDP session moves to the other
// within the health bound (2 × 1 s keepalive + 0.5 s, polled every
// 250 ms), staying one session; new TCP flows go to the other; status,
// the metric and the log say so.
func TestFailoverToSecondUpstream(t *testing.T) {
	h := startHA(t, udpEchoServer(t), tcpEchoServer(t))
	fwd, _ := h.aks.ForwardAddr("relay-udp")
	c, err := net.Dial("udp", fwd.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var echoes echoTimes
	stop, done := make(chan struct{}), make(chan struct{})
	go func() { echoes.run(c, stop); close(done) }()
	defer func() { close(stop); <-done }()
	testutil.Eventually(t, 10*time.Second, "echoes through eks-a", func() bool { return echoes.count() > 10 })

	tcpFwd, _ := h.aks.ForwardAddr("relay-tcp")
	early := tcpEcho(t, tcpFwd.String())

	killed := time.Now()
	h.eksA.Close()
	before := echoes.count()
	testutil.Eventually(t, 20*time.Second, "echoes again, through eks-b", func() bool { return echoes.count() > before+10 })
	gap := echoes.longestGap()
	t.Logf("longest pause between echoes: %v (eks-a closed at +0, resumed within %v)", gap.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond))
	if gap >= 5*time.Second {
		t.Errorf("traffic paused %v; the bound is 2.75 s", gap)
	}

	r := rule(t, h.aks, "relay-udp")
	if r.Upstream != "eks-b 10.99.0.11:7000" || r.To != "10.99.0.11:7000" || !r.Upstreams[1].InUse || r.Upstreams[0].Healthy || r.Upstreams[0].Reason != "keepalive_missed" {
		t.Errorf("status after the failover: %+v", r)
	}
	if r.Active != 1 || r.Flows != 1 {
		t.Errorf("active %d, flows %d: want the one session moved, not a new one", r.Active, r.Flows)
	}
	var failed bool
	for _, f := range r.Failovers {
		failed = failed || f.From == "eks-a/10.99.0.1:7000" && f.To == "eks-b/10.99.0.11:7000" && f.Reason == "keepalive_missed" && f.Count == 1
	}
	if !failed {
		t.Errorf("failovers = %+v", r.Failovers)
	}
	metrics := get(t, h.aks.AdminURL()+"/metrics")
	want := `tunnel_rule_failovers_total{from="eks-a/10.99.0.1:7000",kind="forward",protocol="udp",reason="keepalive_missed",rule="relay-udp",to="eks-b/10.99.0.11:7000"} 1`
	if !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s:\n%s", want, grepLines(metrics, "failover"))
	}
	if !h.log.Contains(`msg="rule failed over to another upstream" rule=relay-udp from="eks-a 10.99.0.1:7000" to="eks-b 10.99.0.11:7000" reason=keepalive_missed`) {
		t.Errorf("no failover log line:\n%s", grepLines(h.log.String(), "fail"))
	}

	// The TCP connection through eks-a was closed, so its client knows;
	// a new one goes to eks-b.
	_ = early.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := early.Read(make([]byte, 1)); n != 0 || err == nil || isTimeout(err) {
		t.Errorf("the TCP connection through eks-a: read %d, %v; want it closed", n, err)
	}
	tcpEcho(t, tcpFwd.String())
	if r := rule(t, h.aks, "relay-tcp"); r.Upstream != "eks-b 10.99.0.11:8000" {
		t.Errorf("TCP rule uses %q", r.Upstream)
	}
}

func get(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// A QUIC connection through a rule with two upstreams outlives the
// upstream it started on: its UDP session moves to the other gateway, the
// server sees the client on a new path (eks-b's socket to it), validates
// it and carries on. No new connection, no new handshake.
func TestFailoverKeepsQUICConnection(t *testing.T) {
	srvID, cliID := testutil.Identity(t, "relay"), testutil.Identity(t, "bunny")
	spc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer spc.Close()
	ln, err := quic.Listen(spc, proto.ServerTLS(srvID, func(keys.Pin) error { return nil }), proto.QUICOptions{}.Config(true))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 4)
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			accepted <- struct{}{}
			go func() {
				s, err := c.AcceptStream(context.Background())
				if err != nil {
					return
				}
				_, _ = io.Copy(s, s) // echo
			}()
		}
	}()
	h := startHA(t, spc.LocalAddr().String(), tcpEchoServer(t))
	fwd, _ := h.aks.ForwardAddr("relay-udp")

	cpc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer cpc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := quic.Dial(ctx, cpc, net.UDPAddrFromAddrPort(fwd), proto.ClientTLS(cliID, srvID.Pin()), proto.QUICOptions{}.Config(false))
	if err != nil {
		t.Fatalf("QUIC handshake through eks-a: %v", err)
	}
	defer conn.CloseWithError(0, "")
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var echoes echoTimes
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sendEvery(s, 20*time.Millisecond, "ping", stop)
	}()
	readDone := make(chan error, 1)
	go func() {
		buf := make([]byte, 4)
		for {
			if _, err := io.ReadFull(s, buf); err != nil {
				readDone <- err
				return
			}
			echoes.mu.Lock()
			echoes.times = append(echoes.times, time.Now())
			echoes.mu.Unlock()
		}
	}()
	defer func() { close(stop); <-done }()
	testutil.Eventually(t, 10*time.Second, "echoes through eks-a", func() bool { return echoes.count() > 10 })

	h.eksA.Close()
	before := echoes.count()
	testutil.Eventually(t, 30*time.Second, "echoes again, through eks-b", func() bool { return echoes.count() > before+10 })
	gap := echoes.longestGap()
	t.Logf("longest pause on the QUIC stream: %v", gap.Round(time.Millisecond))
	if gap >= 5*time.Second {
		t.Errorf("the QUIC stream paused %v", gap)
	}
	select {
	case err := <-readDone:
		t.Fatalf("the stream ended: %v", err)
	default:
	}
	if n := len(accepted); n != 1 {
		t.Errorf("the server accepted %d connections, want the one", n)
	}
	if r := rule(t, h.aks, "relay-udp"); r.Upstream != "eks-b 10.99.0.11:7000" || r.Flows != 1 {
		t.Errorf("status: %+v", r)
	}
}

// tcpEcho connects to addr, checks one echo and returns the connection.
func tcpEcho(t *testing.T, addr string) net.Conn {
	t.Helper()
	tc := sendEcho(t, addr, []byte("hello"))
	got := make([]byte, 5)
	if _, err := io.ReadFull(tc, got); err != nil || string(got) != "hello" {
		t.Fatalf("TCP echo through %s: %q, %v", addr, got, err)
	}
	_ = tc.SetDeadline(time.Time{})
	return tc
}

// Two gateways started with one private key, both dialling the same peer
// and sending through it: the peer answers both, but sends to whichever it
// heard last, so each holder's sessions keep going quiet after answered
// renewals, and the holders say so loudly. (The peer's own report, an
// endpoint that swings between them, depends on sampling a swing that
// can last under 100 ms; it is not waited for here.)
func TestTwoGatewaysWithOneKeyAreReported(t *testing.T) {
	aksKey, shared := testutil.PrivateKey(t), testutil.PrivateKey(t)
	aks := &tunnel.Gateway{PrivateKey: &aksKey, Logger: testLogger(t)}
	startConfigured(t, aks, mustParse(t, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, addresses: [10.99.0.2], uapiDir: "-"}
peers:
  - {name: eks-a, publicKey: %s, allowedIPs: [10.99.0.1/32]}
expose:
  - {name: echo, protocol: udp, port: 7000, target: "%s", peers: [eks-a]}
admin: {listen: "-"}
`, shared.Public(), udpEchoServer(t))))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	var logs []*testutil.Buffer
	for _, name := range []string{"eks-a", "eks-a2"} {
		log := &testutil.Buffer{}
		logs = append(logs, log)
		gw := &tunnel.Gateway{PrivateKey: &shared, Logger: log.Logger()}
		startConfigured(t, gw, mustParse(t, fmt.Sprintf(`
interface: {name: %s, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}
forward:
  - {name: echo, protocol: udp, listen: "127.0.0.1:0", peer: aks, to: "10.99.0.2:7000"}
admin: {listen: "-"}
`, name, aksKey.Public(), aks.ListenPort())))
		fwd, _ := gw.ForwardAddr("echo")
		c, err := net.Dial("udp", fwd.String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendEvery(c, 100*time.Millisecond, "data", stop)
		}()
	}
	// Three answered renewals in a row, each after 2.5 s of silence (a 1 s
	// keepalive): about 8 s once the two holders start breaking each
	// other's sessions.
	const want = "ONE PRIVATE KEY IS PROBABLY RUNNING ON TWO GATEWAYS: peer aks answers every renewed handshake"
	reported := func() int {
		n := 0
		for _, l := range logs {
			n += l.Count(want)
		}
		return n
	}
	deadline := time.Now().Add(60 * time.Second)
	for reported() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the shared key was not reported within 60 s; the holders logged:\n%s\n---\n%s",
				grepLines(logs[0].String(), "level=INFO"), grepLines(logs[1].String(), "level=INFO"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	for _, l := range logs {
		if n := l.Count(want); n > 1 {
			t.Errorf("one holder reported %d times within a minute, want at most once", n)
		}
	}
}

// A closed upstream that comes back (same key, same address) is used for
// new flows again without restarting anything else; sessions already
// moved stay where they are.
func TestUpstreamRejoins(t *testing.T) {
	udpEcho := udpEchoServer(t)
	h := startHA(t, udpEcho, tcpEchoServer(t))
	fwd, _ := h.aks.ForwardAddr("relay-udp")
	c, err := net.Dial("udp", fwd.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := udpRoundTrip(c, []byte("x"), 20, 250*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	cfg, key := h.eksA.Config(), h.eksAKey
	h.eksA.Close()
	testutil.Eventually(t, 20*time.Second, "failover to eks-b", func() bool { return rule(t, h.aks, "relay-udp").Upstream == "eks-b 10.99.0.11:7000" })
	if _, err := udpRoundTrip(c, []byte("y"), 20, 250*time.Millisecond); err != nil {
		t.Fatal(err)
	}

	back := time.Now()
	startGateway(t, cfg, key)
	testutil.Eventually(t, 20*time.Second, "eks-a in use again", func() bool { return rule(t, h.aks, "relay-udp").Upstream == "eks-a 10.99.0.1:7000" })
	t.Logf("eks-a rejoined %v after its restart", time.Since(back).Round(time.Millisecond))
	r := rule(t, h.aks, "relay-udp")
	var recovered bool
	for _, f := range r.Failovers {
		recovered = recovered || f.From == "eks-b/10.99.0.11:7000" && f.To == "eks-a/10.99.0.1:7000" && f.Reason == "recovered"
	}
	if !recovered {
		t.Errorf("failovers = %+v", r.Failovers)
	}
	if _, err := udpRoundTrip(c, []byte("z"), 20, 250*time.Millisecond); err != nil || r.Flows != 1 {
		t.Fatalf("the moved session after eks-a's return: %v, flows %d", err, r.Flows)
	}
	d, err := net.Dial("udp", fwd.String())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, err := udpRoundTrip(d, []byte("new"), 20, 250*time.Millisecond); err != nil {
		t.Fatalf("a new session through eks-a: %v", err)
	}
}

// A replica's config naming a peer with the replica's own key (a copy of
// the other replica's config with the keys mixed up) is refused at start,
// naming the peer.
func TestPeerWithOwnKeyRefused(t *testing.T) {
	own, other := testutil.PrivateKey(t), testutil.PrivateKey(t)
	g := &tunnelGateway{key: own, cfg: mustParse(t, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, addresses: [10.99.0.2], uapiDir: "-"}
peers:
  - {name: eks-a, publicKey: %s, allowedIPs: [10.99.0.1/32]}
  - {name: eks-b, publicKey: %s, allowedIPs: [10.99.0.11/32]}
admin: {listen: "-"}
`, other.Public(), own.Public()))}
	err := g.start(t)
	if !errors.Is(err, tunnel.ErrBadConfig) || !strings.Contains(err.Error(), `peer "eks-b" has this gateway's own public key`) {
		t.Fatalf("start: %v", err)
	}
}
