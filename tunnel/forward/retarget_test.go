package forward

import (
	"context"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// taggedUDP answers each datagram with tag followed by the datagram.
func taggedUDP(t *testing.T, tag string) *net.UDPConn {
	return udpServer(t, func(d []byte) []byte { return append([]byte(tag), d...) })
}

// A session moved by Retarget keeps its source and its place in the
// table; its datagrams and replies go by the new socket from then on.
func TestUDPRetargetKeepsTheSession(t *testing.T) {
	a, b := taggedUDP(t, "a:"), taggedUDP(t, "b:")
	var target atomic.Pointer[net.UDPAddr]
	target.Store(a.LocalAddr().(*net.UDPAddr))
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	p := &UDP{
		Name: "u", Conn: front, DialTimeout: time.Second, IdleTimeout: time.Minute, MaxSessions: 8,
		MaxUp: 1500, MaxDown: 1500, Stats: &st, Logger: slog.New(slog.DiscardHandler),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", target.Load().String())
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("udp", front.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ask := func(msg, want string) {
		t.Helper()
		buf := make([]byte, 2048)
		for range 20 {
			if _, err := c.Write([]byte(msg)); err != nil {
				t.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			n, err := c.Read(buf)
			if err == nil {
				if string(buf[:n]) != want {
					t.Fatalf("got %q, want %q", buf[:n], want)
				}
				return
			}
		}
		t.Fatalf("no answer to %q", msg)
	}
	ask("one", "a:one")

	toA := func(conn net.Conn) bool { return conn.RemoteAddr().String() == a.LocalAddr().String() }
	if n := p.Retarget(ctx, func(net.Conn) bool { return false }); n != 0 {
		t.Fatalf("moved %d sessions that are not stale", n)
	}
	target.Store(b.LocalAddr().(*net.UDPAddr))
	if n := p.Retarget(ctx, toA); n != 1 {
		t.Fatalf("moved %d sessions, want 1", n)
	}
	ask("two", "b:two")
	ask("three", "b:three")
	if s := st.Snapshot(); s.Flows != 1 || s.Active != 1 || p.Sessions() != 1 {
		t.Fatalf("flows %d, active %d, sessions %d: want the one session kept", s.Flows, s.Active, p.Sessions())
	}
	if n := p.Retarget(ctx, toA); n != 0 {
		t.Fatalf("moved %d sessions again", n)
	}
}
