package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

// Each test here fails if the gateway carries something its rules do not
// name.

func dialFails(t *testing.T, what string, dial func(ctx context.Context) (net.Conn, error)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	c, err := dial(ctx)
	if err == nil {
		c.Close()
		t.Fatalf("%s: connected, want no answer", what)
	}
	// Silence, not a refusal: a reset would tell a scanner the port exists.
	if !isTimeout(err) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("%s: %v, want a timeout (no answer at all)", what, err)
	}
}

func TestUnexposedPortGetsNothing(t *testing.T) {
	p := startPair(t, pairOpts{aksLimits: "{tcpDialTimeout: 2s}"})
	// Make sure the tunnel is up: an exposed port answers.
	p.dialExposed(t, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	before := p.eks.Status().Ingress["not_exposed"]
	dialFails(t, "tcp/8001", func(ctx context.Context) (net.Conn, error) { return p.aks.Dial(ctx, "tcp", "10.99.0.1:8001") })
	// UDP: no answer either.
	u, err := p.aks.Dial(ctx, "udp", "10.99.0.1:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got, err := udpRoundTrip(u, []byte("anyone?"), 2, 500*time.Millisecond); err == nil {
		t.Fatalf("udp/7001 answered %q", got)
	}
	after := p.eks.Status().Ingress["not_exposed"]
	if after < before+3 {
		t.Errorf("not_exposed drops went %d → %d; want the SYN(s) and datagrams counted", before, after)
	}
	// And a forward rule pointing at it gives its client nothing.
	fc, err := net.DialTimeout("tcp", p.forward(t, "unexposed"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer fc.Close()
	_ = fc.SetDeadline(time.Now().Add(15 * time.Second))
	if b, _ := io.ReadAll(fc); len(b) != 0 {
		t.Fatalf("unexposed forward returned %q", b)
	}
}

func TestPeerNotOnRuleIsRefused(t *testing.T) {
	mallory := testutil.PrivateKey(t)
	p := startPair(t, pairOpts{eksListens: true, eksPeers: fmt.Sprintf("  - {name: mallory, publicKey: %s, allowedIPs: [10.99.0.3/32]}\n", mallory.Public())})
	m := startStranger(t, p, mallory, "10.99.0.3", "")
	dialFails(t, "mallory → relay-tcp", func(ctx context.Context) (net.Conn, error) { return m.Dial(ctx, "tcp", "10.99.0.1:8000") })
	st := p.eks.Status()
	var denied uint64
	for _, r := range st.Rules {
		if r.Name == "relay-tcp" {
			denied = r.Denied
		}
	}
	if denied == 0 {
		t.Errorf("relay-tcp denied count is 0; status %+v", st.Rules)
	}
	// The handshake itself succeeded: the key is valid, the rule says no.
	var shook bool
	for _, peer := range st.Peers {
		if peer.Name == "mallory" && !peer.LastHandshake.IsZero() {
			shook = true
		}
	}
	if !shook {
		t.Errorf("mallory never completed a handshake; the test proves nothing. peers: %+v", st.Peers)
	}
	// And bunny's side still gets through.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.aks.Dial(ctx, "tcp", "10.99.0.1:8000")
	if err != nil {
		t.Fatalf("allowed peer: %v", err)
	}
	c.Close()
}

func TestWrongKeyGetsNoHandshake(t *testing.T) {
	p := startPair(t, pairOpts{eksListens: true})
	stranger := startStranger(t, p, testutil.PrivateKey(t), "10.99.0.2", "")
	dialFails(t, "unknown key", func(ctx context.Context) (net.Conn, error) { return stranger.Dial(ctx, "tcp", "10.99.0.1:8000") })
	testutil.Eventually(t, 5*time.Second, "eks counted the refused handshake", func() bool {
		return p.eks.Status().WireGuard.HandshakeRefused > 0
	})
	for _, peer := range stranger.Status().Peers {
		if !peer.LastHandshake.IsZero() || peer.RxBytes != 0 {
			t.Errorf("stranger got an answer: %+v", peer)
		}
	}
}

func TestSpoofedInnerSourceIsDropped(t *testing.T) {
	mallory := testutil.PrivateKey(t)
	p := startPair(t, pairOpts{eksListens: true, eksPeers: fmt.Sprintf("  - {name: mallory, publicKey: %s, allowedIPs: [10.99.0.3/32]}\n", mallory.Public())})
	// mallory's key is known, but it claims aks's tunnel address, which the
	// relay rules allow.
	m := startStranger(t, p, mallory, "10.99.0.2", "")
	dialFails(t, "spoofed source", func(ctx context.Context) (net.Conn, error) { return m.Dial(ctx, "tcp", "10.99.0.1:8000") })
	if got := p.eks.Status().WireGuard.SpoofedSource; got == 0 {
		t.Fatal("WireGuard did not count a spoofed inner source")
	}
}

func TestNothingIsRouted(t *testing.T) {
	mallory := testutil.PrivateKey(t)
	p := startPair(t, pairOpts{eksListens: true, eksPeers: fmt.Sprintf("  - {name: mallory, publicKey: %s, allowedIPs: [10.99.0.3/32]}\n", mallory.Public())})
	// mallory would send anything to eks: its own loopback services, and
	// other tunnel addresses.
	m := startStranger(t, p, mallory, "10.99.0.3", ", 127.0.0.0/8, 10.99.0.9/32")
	_, echoPort, _ := net.SplitHostPort(p.tcpEcho)
	for _, to := range []string{"127.0.0.1:" + echoPort, "10.99.0.9:8000"} {
		dialFails(t, "route to "+to, func(ctx context.Context) (net.Conn, error) { return m.Dial(ctx, "tcp", to) })
	}
	if got := p.eks.Status().Ingress["not_our_address"]; got == 0 {
		t.Error("eks did not count packets for other addresses")
	}
	// From the gateway's own embedded API: only peers can be dialled.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, to := range []string{"127.0.0.1:" + echoPort, "10.99.0.9:8000", "relay.example:7000"} {
		if c, err := p.aks.Dial(ctx, "tcp", to); err == nil {
			c.Close()
			t.Errorf("aks dialled %s", to)
		}
	}
}

// A gateway that only dials has one UDP socket, connected to its peer: a
// third party's packets never reach WireGuard at all.
func TestDialOnlyGatewayHearsOnlyItsPeer(t *testing.T) {
	mallory := testutil.PrivateKey(t)
	p := startPair(t, pairOpts{eksPeers: fmt.Sprintf("  - {name: mallory, publicKey: %s, allowedIPs: [10.99.0.3/32]}\n", mallory.Public())})
	m := startStranger(t, p, mallory, "10.99.0.3", "")
	dialFails(t, "mallory → a dial-only gateway", func(ctx context.Context) (net.Conn, error) { return m.Dial(ctx, "tcp", "10.99.0.1:8000") })
	st := p.eks.Status()
	if st.WireGuard.HandshakeRefused != 0 {
		t.Errorf("WireGuard saw %d handshakes; the kernel should have dropped them", st.WireGuard.HandshakeRefused)
	}
	for _, peer := range st.Peers {
		if peer.Name == "mallory" && (!peer.LastHandshake.IsZero() || peer.RxBytes != 0) {
			t.Errorf("mallory reached eks: %+v", peer)
		}
	}
	// Its own peer still gets through.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := p.aks.Dial(ctx, "tcp", "10.99.0.1:8000")
	if err != nil {
		t.Fatalf("aks: %v", err)
	}
	c.Close()
}
