package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/echo"
	"github.com/tunnel-dev/tunnel/internal/testutil"
)

func listenTCP(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// Half-close: the client finishes sending, the server still answers, and
// both directions' bytes are counted.
func TestTCPHalfClose(t *testing.T) {
	target := listenTCP(t)
	go func() {
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		got, _ := io.ReadAll(c) // until the client's CloseWrite
		_, _ = c.Write(append([]byte("got: "), got...))
	}()
	front := listenTCP(t)
	var st Stats
	p := &TCP{
		Name: "t", Listener: front, DialTimeout: time.Second, MaxConns: 4, Stats: &st, Logger: slog.New(slog.DiscardHandler),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", target.Addr().String())
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("question")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "got: question" {
		t.Fatalf("read %q, %v", got, err)
	}
	testutil.Eventually(t, 5*time.Second, "the connection to close with its bytes counted", func() bool { s := st.Snapshot(); return s.Active == 0 && s.BytesUp == 8 && s.BytesDown == 13 })
}

func TestTCPDialFailureClosesClient(t *testing.T) {
	front := listenTCP(t)
	var st Stats
	p := &TCP{
		Name: "t", Listener: front, DialTimeout: 200 * time.Millisecond, Stats: &st, Logger: slog.New(slog.DiscardHandler),
		Dial: func(ctx context.Context) (net.Conn, error) { <-ctx.Done(); return nil, ctx.Err() },
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = p.Serve(ctx) }()
	defer cancel()
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if n, _ := c.Read(make([]byte, 1)); n != 0 {
		t.Fatal("data from a flow whose dial failed")
	}
	testutil.Eventually(t, 5*time.Second, "the failed dial to be counted", func() bool { return st.Dropped(DropDialFailed) == 1 })
}

func TestTCPShutdownDrains(t *testing.T) {
	target := listenTCP(t)
	release := make(chan struct{})
	go func() {
		c, err := target.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		<-release
		_, _ = c.Write([]byte("late answer"))
	}()
	front := listenTCP(t)
	var st Stats
	p := &TCP{
		Name: "t", Listener: front, DialTimeout: time.Second, Stats: &st, Logger: slog.New(slog.DiscardHandler),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "tcp", target.Addr().String())
		},
	}
	go func() { _ = p.Serve(context.Background()) }()
	c, err := net.Dial("tcp", front.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 5*time.Second, "one active connection", func() bool { return st.Snapshot().Active == 1 })
	front.Close() // stop accepting, as Shutdown's caller does
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Shutdown(ctx)
	}()
	time.Sleep(50 * time.Millisecond)
	close(release) // the flow in flight finishes during the drain
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	got, _ := io.ReadAll(c)
	c.Close() // the client is done too: the flow ends and the drain with it
	wg.Wait()
	if string(got) != "late answer" {
		t.Fatalf("flow in flight got %q during the drain", got)
	}
}

func TestUDPSessionsAndLimits(t *testing.T) {
	// The "other side": an echo on loopback.
	peer, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	go echo.UDP(peer)
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var st Stats
	p := &UDP{
		Name: "u", Conn: front, DialTimeout: time.Second, IdleTimeout: 200 * time.Millisecond,
		MaxSessions: 2, MaxUp: 100, MaxDown: 100, Stats: &st, Logger: slog.New(slog.DiscardHandler),
		Dial: func(ctx context.Context) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "udp", peer.LocalAddr().String())
		},
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	rt := func(c net.Conn, msg []byte) ([]byte, error) {
		_ = c.SetDeadline(time.Now().Add(300 * time.Millisecond))
		if _, err := c.Write(msg); err != nil {
			return nil, err
		}
		b := make([]byte, 200)
		n, err := c.Read(b)
		return b[:n], err
	}
	var cs []net.Conn
	for range 3 {
		c, err := net.Dial("udp", front.LocalAddr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		cs = append(cs, c)
	}
	for i, c := range cs[:2] {
		if got, err := rt(c, []byte("hi")); err != nil || string(got) != "hi" {
			t.Fatalf("session %d: %q %v", i, got, err)
		}
	}
	if _, err := rt(cs[2], []byte("hi")); err == nil {
		t.Fatal("third session past the cap")
	}
	if _, err := rt(cs[0], bytes.Repeat([]byte("x"), 101)); err == nil {
		t.Fatal("oversize datagram carried")
	}
	if st.Dropped(DropSessionLimit) != 1 || st.Dropped(DropOversize) != 1 {
		t.Fatalf("drops: %+v", st.Snapshot().Drops)
	}
	testutil.Eventually(t, 5*time.Second, "the sessions to expire", func() bool { return p.Sessions() == 0 && st.Snapshot().Active == 0 })
	// After expiry the third client gets a session.
	if got, err := rt(cs[2], []byte("now")); err != nil || string(got) != "now" {
		t.Fatalf("after expiry: %q %v", got, err)
	}
}

// pingServer answers only datagrams that start with "ping", as a real
// service answers its clients and not a flooder's junk.
func pingServer(t *testing.T) string {
	return udpServer(t, func(d []byte) []byte {
		if !bytes.HasPrefix(d, []byte("ping")) {
			return nil
		}
		return append([]byte("pong"), d[4:]...)
	}).LocalAddr().String()
}

// udpServer answers each datagram with reply's answer to it, or not at
// all when that is nil, until the test ends.
func udpServer(t *testing.T, reply func([]byte) []byte) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			if r := reply(buf[:n]); r != nil {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	return pc
}

// startUDPRule serves p (its Conn a fresh socket on 127.0.0.1, its Dial
// to target) until the test ends.
func startUDPRule(t *testing.T, p *UDP, target string) string {
	t.Helper()
	front, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.Conn = front
	p.Dial = func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", target)
	}
	if p.Stats == nil {
		p.Stats = &Stats{}
	}
	p.Logger = slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return front.LocalAddr().String()
}

// clientFrom is a UDP socket on a loopback address of its own, connected
// to the rule.
func clientFrom(t *testing.T, ip, front string) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(ip+":0")), net.UDPAddrFromAddrPort(netip.MustParseAddrPort(front)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ping(c *net.UDPConn, msg string) error {
	buf := make([]byte, 64)
	for range 3 {
		if _, err := c.Write([]byte("ping" + msg)); err != nil {
			return err
		}
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) == "pong"+msg {
			return nil
		}
		if err != nil && !isTimeout(err) {
			return err
		}
	}
	return errors.New("no pong")
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// flood sends n datagrams to front from n distinct source ports of
// 127.0.0.1 (each socket stays open so that no port is used twice), in
// batches that wait for the rule to have handled each (handled counts
// them), so that none is lost in a socket buffer.
func flood(t *testing.T, front string, n int, handled func() uint64) {
	t.Helper()
	to := net.UDPAddrFromAddrPort(netip.MustParseAddrPort(front))
	base := handled()
	for i := 0; i < n; i++ {
		pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		defer pc.Close()
		if _, err := pc.WriteToUDP([]byte("junk"), to); err != nil {
			t.Fatal(err)
		}
		if i%64 == 63 || i == n-1 {
			want := base + uint64(i+1)
			testutil.Eventually(t, 5*time.Second, fmt.Sprintf("the rule to handle %d datagrams", want), func() bool { return handled() >= want })
		}
	}
}

// 1,100 datagrams from distinct source ports, more than the rule's 1,024
// sessions: an established flow keeps working and a new client still gets
// a session, because sessions that never got a reply are evicted first.
func TestUDPFloodCannotLockOut(t *testing.T) {
	var st Stats
	p := &UDP{Name: "u", DialTimeout: time.Second, IdleTimeout: 2 * time.Minute, MaxSessions: 1024, MaxUp: 100, MaxDown: 100, Stats: &st}
	front := startUDPRule(t, p, pingServer(t))
	established := clientFrom(t, "127.0.0.2", front)
	if err := ping(established, "1"); err != nil {
		t.Fatalf("established flow: %v", err)
	}
	handled := func() uint64 { s := st.Snapshot(); return s.Flows + s.Drops["session_limit"] }
	flood(t, front, 1100, handled)
	if err := ping(established, "2"); err != nil {
		t.Fatalf("established flow after the flood: %v (drops %v)", err, st.Snapshot().Drops)
	}
	if err := ping(clientFrom(t, "127.0.0.3", front), "3"); err != nil {
		t.Fatalf("a new client after the flood: %v (sessions %d, drops %v)", err, p.Sessions(), st.Snapshot().Drops)
	}
	if got := st.Snapshot().Drops["evicted_unreplied"]; got < 1100+2-1024 {
		t.Errorf("evicted %d unreplied sessions, want at least %d", got, 1100+2-1024)
	}
	if got := p.Sessions(); got > 1024 {
		t.Errorf("%d sessions, past the cap", got)
	}
}

// One source address holds at most its share of sessions; the rest are
// refused and counted, and sessions that never got a reply end after the
// unreplied timeout while an answered one lives on.
func TestUDPPerSourceAndUnrepliedTimeout(t *testing.T) {
	var st Stats
	p := &UDP{Name: "u", DialTimeout: time.Second, IdleTimeout: 2 * time.Minute, UnrepliedTimeout: 2 * time.Second,
		MaxSessions: 1024, MaxPerSource: PerSourceShare(1024), MaxUp: 100, MaxDown: 100, Stats: &st}
	front := startUDPRule(t, p, pingServer(t))
	established := clientFrom(t, "127.0.0.2", front)
	if err := ping(established, "1"); err != nil {
		t.Fatalf("established flow: %v", err)
	}
	handled := func() uint64 { s := st.Snapshot(); return s.Flows + s.Drops["source_limit"] }
	flood(t, front, 1100, handled)
	if got := st.Dropped(DropSourceLimit); got == 0 {
		t.Error("no datagram refused for its source's share")
	}
	if got := p.Sessions(); got > 1+256 {
		t.Errorf("%d sessions: 127.0.0.1 holds more than its 256", got)
	}
	if err := ping(clientFrom(t, "127.0.0.3", front), "2"); err != nil {
		t.Fatalf("another source during the flood: %v", err)
	}
	// The flood's sessions end in well under the idle timeout.
	testutil.Eventually(t, 5*time.Second, "the unanswered sessions to expire", func() bool { return p.Sessions() == 2 })
	if err := ping(established, "3"); err != nil {
		t.Fatalf("established flow after the unreplied ones expired: %v", err)
	}
}
