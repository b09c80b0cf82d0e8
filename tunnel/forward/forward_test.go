package forward

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
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
