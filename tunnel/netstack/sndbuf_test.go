package netstack

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
)

func TestShare(t *testing.T) {
	for _, c := range []struct {
		budget, n int
		want      int64
	}{
		{8 << 20, 0, 8 << 20},
		{8 << 20, 1, 8 << 20},
		{8 << 20, 2, 4 << 20},
		{8 << 20, 4, 2 << 20},
		{8 << 20, 64, minSendShare}, // 128 KiB each would be too little
		{256 << 10, 4, 256 << 10},   // never more than the budget
	} {
		if got := share(c.budget, c.n); got != c.want {
			t.Errorf("share(%d, %d) = %d, want %d", c.budget, c.n, got, c.want)
		}
	}
}

// sendBuffers are the send buffer sizes of s's established connections.
func sendBuffers(s *Stack) []int64 {
	var sizes []int64
	for _, ep := range s.s.RegisteredEndpoints() {
		te, ok := ep.(sizer)
		if ok && tcp.EndpointState(te.State()) == tcp.StateEstablished {
			sizes = append(sizes, te.SocketOptions().GetSendBufferSize())
		}
	}
	slices.Sort(sizes)
	return sizes
}

// waitSendBuffers waits up to 5 s for s's connections' send buffers to be
// want, and fails t with what they were if not.
func waitSendBuffers(t *testing.T, s *Stack, want []int64) {
	t.Helper()
	var got []int64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if got = sendBuffers(s); slices.Equal(got, want) {
			return
		}
	}
	t.Fatalf("send buffers %v, want %v", got, want)
}

// TestConnectionsShareTheSendBudget: four connections of a stack get a
// quarter of the budget each, and the one left after three close gets the
// whole budget back. Real stacks joined back to back, real connections.
func TestConnectionsShareTheSendBudget(t *testing.T) {
	a, _, ln := listeningPair(t)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func() net.Conn {
		c, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB, 80))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	budget := int64(DefaultTCPBuffer)
	first := dial()
	// Alone, a connection keeps gVisor's tuning (it starts at 1 MiB).
	time.Sleep(3 * shareEvery)
	if got := sendBuffers(a); len(got) != 1 || got[0] != tcp.DefaultSendBufferSize {
		t.Fatalf("a lone connection's send buffer: %v, want [%d]", got, tcp.DefaultSendBufferSize)
	}
	var others []net.Conn
	for range 3 {
		others = append(others, dial())
	}
	q := budget / 4
	waitSendBuffers(t, a, []int64{q, q, q, q})
	for _, c := range others {
		c.Close()
	}
	waitSendBuffers(t, a, []int64{budget})
	// The one left still carries data.
	if _, err := first.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
}

// The endpoints sendShares sizes are gVisor's TCP endpoints.
var _ sizer = (*tcp.Endpoint)(nil)
