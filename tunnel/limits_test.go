package tunnel_test

import (
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel"
)

func rule(t *testing.T, gw *tunnel.Gateway, name string) tunnel.RuleStatus {
	t.Helper()
	for _, r := range gw.Status().Rules {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no rule %q", name)
	return tunnel.RuleStatus{}
}

func TestUDPSessionsExpire(t *testing.T) {
	p := startPair(t, pairOpts{aksLimits: "{udpIdleTimeout: 300ms}", eksLimits: "{udpIdleTimeout: 300ms}"})
	c, err := net.Dial("udp", p.forward(t, "relay-udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := udpRoundTrip(c, []byte("one"), 10, time.Second); err != nil {
		t.Fatal(err)
	}
	if r := rule(t, p.aks, "relay-udp"); r.Active != 1 {
		t.Fatalf("active sessions = %d, want 1", r.Active)
	}
	testutil.Eventually(t, 5*time.Second, "aks session expired", func() bool { return rule(t, p.aks, "relay-udp").Active == 0 })
	testutil.Eventually(t, 5*time.Second, "eks session expired", func() bool { return rule(t, p.eks, "relay-udp").Active == 0 })
	// The same source starts a new session and is answered.
	if got, err := udpEcho(c, []byte("two"), 10, time.Second); err != nil || string(got) != "two" {
		t.Fatalf("after expiry: %q, %v", got, err)
	}
	if r := rule(t, p.aks, "relay-udp"); r.Flows != 2 {
		t.Fatalf("sessions total = %d, want 2", r.Flows)
	}
}

func TestUDPSessionCap(t *testing.T) {
	p := startPair(t, pairOpts{aksLimits: "{udpMaxSessions: 2}"})
	var conns []net.Conn
	for range 3 {
		c, err := net.Dial("udp", p.forward(t, "relay-udp"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	for i, c := range conns[:2] {
		if _, err := udpRoundTrip(c, []byte("in"), 10, time.Second); err != nil {
			t.Fatalf("session %d: %v", i, err)
		}
	}
	if _, err := udpRoundTrip(conns[2], []byte("over"), 2, 300*time.Millisecond); err == nil {
		t.Fatal("a third session was carried past the cap of 2")
	}
	if got := rule(t, p.aks, "relay-udp").Drops["session_limit"]; got == 0 {
		t.Fatal("session_limit drops not counted")
	}
}

func TestUDPOversizeDroppedNotFragmented(t *testing.T) {
	p := startPair(t, pairOpts{})
	c, err := net.Dial("udp", p.forward(t, "relay-udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// MTU 1420 over IPv4 carries 1392 bytes of UDP payload.
	fits := bytes.Repeat([]byte{'a'}, 1392)
	if got, err := udpRoundTrip(c, fits, 10, time.Second); err != nil || !bytes.Equal(got, fits) {
		t.Fatalf("1392-byte datagram: %d bytes back, %v", len(got), err)
	}
	before := p.eks.Status().Ingress["fragment"]
	// udpEcho, not udpRoundTrip: a late echo of fits (sent twice when
	// its first echo was slow) is no proof that big crossed.
	big := bytes.Repeat([]byte{'b'}, 1393)
	if _, err := udpEcho(c, big, 2, 300*time.Millisecond); err == nil {
		t.Fatal("a 1393-byte datagram crossed a 1420-byte tunnel")
	}
	if got := rule(t, p.aks, "relay-udp").Drops["oversize"]; got != 2 {
		t.Fatalf("oversize drops = %d, want 2", got)
	}
	if after := p.eks.Status().Ingress["fragment"]; after != before {
		t.Fatalf("fragments reached eks (%d → %d): the datagram was fragmented, not dropped", before, after)
	}
}

func TestTCPConnectionCap(t *testing.T) {
	p := startPair(t, pairOpts{aksLimits: "{tcpMaxConnections: 2}"})
	for i := range 2 {
		c, err := net.DialTimeout("tcp", p.forward(t, "relay-tcp"), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := c.Read(b); err != nil {
			t.Fatalf("conn %d: %v", i, err)
		}
	}
	c, err := net.DialTimeout("tcp", p.forward(t, "relay-tcp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write([]byte("x"))
	if n, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatalf("third connection was carried (%d bytes)", n)
	}
	if got := rule(t, p.aks, "relay-tcp").Drops["conn_limit"]; got != 1 {
		t.Fatalf("conn_limit drops = %d, want 1", got)
	}
	if r := rule(t, p.aks, "relay-tcp"); r.Active != 2 {
		t.Fatalf("active = %d, want 2", r.Active)
	}
}
