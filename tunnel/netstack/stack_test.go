package netstack

import (
	"context"
	"io"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

var (
	addrA = netip.MustParseAddr("10.99.0.1")
	addrB = netip.MustParseAddr("10.99.0.2")
)

// wire joins two stacks back to back, as two WireGuard devices would, and
// records the largest batch a Read returned.
func wire(t *testing.T, a, b *Stack) *atomic.Int64 { return wireTB(t, a, b) }

func wireTB(t testing.TB, a, b *Stack) *atomic.Int64 {
	t.Helper()
	var maxBatch atomic.Int64
	pump := func(from, to *Stack) {
		bufs := make([][]byte, 128)
		for i := range bufs {
			bufs[i] = make([]byte, 1500)
		}
		sizes := make([]int, 128)
		for {
			n, err := from.Read(bufs, sizes, 0)
			if err != nil {
				return
			}
			if int64(n) > maxBatch.Load() {
				maxBatch.Store(int64(n))
			}
			out := make([][]byte, n)
			for i := range n {
				out[i] = bufs[i][:sizes[i]]
			}
			if _, err := to.Write(out, 0); err != nil {
				return
			}
			from.Sent(n) // as WireGuard's bind reports
		}
	}
	go pump(a, b)
	go pump(b, a)
	return &maxBatch
}

func newStack(t *testing.T, self, peer netip.Addr, filter func([]byte) bool) *Stack {
	t.Helper()
	s, err := New(Options{Addresses: []netip.Addr{self}, Routes: []netip.Prefix{netip.PrefixFrom(peer, 32)}, MTU: 1420, Filter: filter})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// listeningPair is two stacks joined back to back, B listening on TCP
// port 80.
func listeningPair(t *testing.T) (a, b *Stack, ln *gonet.TCPListener) {
	t.Helper()
	a = newStack(t, addrA, addrB, nil)
	b = newStack(t, addrB, addrA, nil)
	wire(t, a, b)
	ln, err := b.ListenTCP(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return a, b, ln
}

func TestStacksBackToBack(t *testing.T) {
	a := newStack(t, addrA, addrB, nil)
	b := newStack(t, addrB, addrA, nil)
	maxBatch := wire(t, a, b)
	ln, err := b.ListenTCP(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	const size = 4 << 20
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write(make([]byte, size))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n, err := io.Copy(io.Discard, c)
	if err != nil || n != size {
		t.Fatalf("read %d bytes, %v", n, err)
	}
	if maxBatch.Load() < 2 {
		t.Errorf("Read never returned more than one packet at once")
	}
	st := b.Stats()
	if st.PacketsOut == 0 || st.BytesOut < size {
		t.Errorf("stats = %+v", st)
	}
	// Nothing outside the routes can be dialled.
	if _, err := a.DialTCP(ctx, netip.MustParseAddrPort("10.99.0.3:80")); err == nil {
		t.Error("dialled an address with no route")
	}
}

func TestFilterDropsBeforeTheStack(t *testing.T) {
	var seen atomic.Int64
	a := newStack(t, addrA, addrB, nil)
	b := newStack(t, addrB, addrA, func([]byte) bool { seen.Add(1); return false })
	wire(t, a, b)
	ln, err := b.ListenTCP(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if c, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB, 80)); err == nil {
		c.Close()
		t.Fatal("connected through a filter that drops everything")
	}
	if seen.Load() == 0 || b.Stats().Filtered != uint64(seen.Load()) {
		t.Fatalf("filter saw %d packets, stats say %d filtered", seen.Load(), b.Stats().Filtered)
	}
}

func TestCloseEndsRead(t *testing.T) {
	s, err := New(Options{Addresses: []netip.Addr{addrA}, MTU: 1420})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.Read([][]byte{make([]byte, 1500)}, []int{0}, 0)
		done <- err
	}()
	s.Close()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Read returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read blocked after Close")
	}
	if _, err := New(Options{MTU: 1420}); err == nil {
		t.Fatal("a stack without addresses")
	}
	if _, err := New(Options{Addresses: []netip.Addr{addrA}, MTU: 100}); err == nil {
		t.Fatal("an MTU below 1280")
	}
}
