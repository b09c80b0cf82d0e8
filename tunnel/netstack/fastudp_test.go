package netstack

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestFastUDP(t *testing.T) {
	// b verifies checksums in gVisor, so a packet we built badly would be
	// dropped there.
	a := newStack(t, addrA, addrB, nil)
	b, err := New(Options{Addresses: []netip.Addr{addrB}, Routes: []netip.Prefix{netip.PrefixFrom(addrA, 32)}, MTU: 1420, VerifyChecksums: true, NoGRO: true})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	wire(t, a, b)

	// Fast path to fast path.
	srv, err := b.ListenUDPFast(netip.AddrPortFrom(addrB, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	go func() {
		buf := make([]byte, 2000)
		for {
			n, from, err := srv.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = srv.WriteTo(append([]byte("echo:"), buf[:n]...), from)
		}
	}()
	c, err := a.DialUDPFast(netip.AddrPortFrom(addrB, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2000)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "echo:hi" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}

	// The biggest datagram that fits goes; one more byte is EMSGSIZE.
	big := bytes.Repeat([]byte("x"), 1420-28)
	if _, err := c.Write(big); err != nil {
		t.Fatalf("1392 bytes: %v", err)
	}
	if _, err := c.Write(append(big, 'y')); !errors.Is(err, syscall.EMSGSIZE) {
		t.Fatalf("1393 bytes: %v, want EMSGSIZE", err)
	}

	// A gVisor socket on b talks to a fast-path socket on a: our headers
	// and checksums pass gVisor's checks both ways.
	g, err := b.DialUDP(netip.AddrPortFrom(addrA, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	fa, err := a.ListenUDPFast(netip.AddrPortFrom(addrA, 9000))
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	if _, err := g.Write([]byte("from gvisor")); err != nil {
		t.Fatal(err)
	}
	_ = fa.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := fa.ReadFrom(buf)
	if err != nil || string(buf[:n]) != "from gvisor" {
		t.Fatalf("fast socket read %q, %v", buf[:n], err)
	}
	if _, err := fa.WriteTo([]byte("to gvisor"), from); err != nil {
		t.Fatal(err)
	}
	_ = g.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err = g.Read(buf)
	if err != nil || string(buf[:n]) != "to gvisor" {
		t.Fatalf("gVisor socket read %q, %v (a bad checksum is dropped by gVisor)", buf[:n], err)
	}

	// Deadlines and close.
	_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("past deadline: %v", err)
	}
	var ne net.Error
	if _, err := c.Read(buf); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("deadline error is not a timeout: %v", err)
	}
	_ = c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := c.Read(buf); done <- err }()
	c.Close()
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("read after close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read blocked after close")
	}
	if _, err := b.ListenUDPFast(netip.AddrPortFrom(addrB, 7000)); err == nil {
		t.Fatal("bound a port in use")
	}
	if _, err := a.DialUDPFast(netip.MustParseAddrPort("10.99.0.9:1")); err == nil {
		t.Fatal("dialled an address with no route")
	}
}

// A connected socket hears only its peer.
func TestFastUDPConnectedFilters(t *testing.T) {
	a := newStack(t, addrA, addrB, nil)
	b := newStack(t, addrB, addrA, nil)
	wire(t, a, b)
	c, err := a.DialUDPFast(netip.AddrPortFrom(addrB, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Something else on b sends to c's port.
	other, err := b.DialUDPFast(c.local)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Write([]byte("not your peer")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if n, err := c.Read(make([]byte, 100)); err == nil {
		t.Fatalf("a connected socket heard %d bytes from a stranger", n)
	}
}
