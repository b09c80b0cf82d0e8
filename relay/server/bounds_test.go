package server_test

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/internal/procstat"
	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/server"
)

// stallStreams opens n streams on conn, each declaring a frame of size
// bytes and sending all but its last byte, as the attack in the issue
// does; the streams stay open until the test ends. body is shared, so the
// sender's own memory does not grow with n.
func stallStreams(t *testing.T, conn *quic.Conn, n, size int) {
	t.Helper()
	body := make([]byte, size-1)
	prefix := binary.AppendUvarint(nil, uint64(size))
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait) // after the streams are reset, below
	for range n {
		str, err := conn.OpenStream()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { str.CancelWrite(0); str.CancelRead(0) })
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = str.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := str.Write(prefix); err != nil {
				return
			}
			_, _ = str.Write(body) // blocks once relay stops reading
		}()
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

func vmRSS() string {
	v, err := procstat.Field(procstat.Self, "VmRSS")
	if err != nil {
		return "?"
	}
	return v
}

// The attack at a small scale: streams that each declare a ~1 MiB
// request and send all but its last byte. Relay used to buffer every one
// of them (1 connection of 256 streams: 510 MB of RSS); now the bytes
// being read are bounded by the shared budget, and the rest stays unread
// in QUIC, whose flow control stops the sender.
func TestStalledRequestsAreBoundedByTheReadBudget(t *testing.T) {
	const streams, budget = 64, 4 << 20
	id := testutil.Identity(t, "w")
	h := startRelay(t, relaytest.Options{Server: func(o *server.Options) {
		o.ReadBudget = budget
		o.MaxLargeCalls = streams // the budget alone is under test here
		o.RequestTimeout = 30 * time.Second
	}}, relaytest.Worker{Name: "w", IDs: []keys.Identity{id}, Queues: map[string]string{"a": relaytest.AllActions}})
	base := heapInUse()
	rssBefore := vmRSS()
	stallStreams(t, rawConn(t, h, id), streams, proto.MaxRequestFrame)
	// Let everything the sender can send arrive.
	time.Sleep(3 * time.Second)
	grew := int64(heapInUse()) - int64(base)
	t.Logf("%d stalled %d-byte requests: heap grew %d MiB (RSS %s → %s)", streams, proto.MaxRequestFrame, grew>>20, rssBefore, vmRSS())
	// The budget, QUIC's connection receive window (15 MB in quic-go) and
	// slack; without the budget it was every stream's frame, 64+ MiB.
	if limit := int64(budget + 16<<20 + 8<<20); grew > limit {
		t.Fatalf("heap grew %d MiB with a %d MiB read budget; want under %d MiB", grew>>20, budget>>20, limit>>20)
	}
}

// Past the per-connection bound on large calls, a stream is reset
// OVERLOADED at once and counted; past the per-key bound on connections, a
// connection is closed OVERLOADED and counted.
func TestLargeCallsAndConnectionsPerKeyAreBounded(t *testing.T) {
	id := testutil.Identity(t, "w")
	h := startRelay(t, relaytest.Options{Server: func(o *server.Options) {
		o.MaxLargeCalls = 2
		o.MaxConnsPerIdentity = 2
	}}, relaytest.Worker{Name: "w", IDs: []keys.Identity{id}, Queues: map[string]string{"a": relaytest.AllActions}})
	conn := rawConn(t, h, id)
	stallStreams(t, conn, 2, proto.MaxRequestFrame)
	testutil.Eventually(t, 5*time.Second, "two large calls in flight", func() bool { return h.Metric("relay_large_calls", nil) == 2 })
	str, err := conn.OpenStream()
	if err != nil {
		t.Fatal(err)
	}
	_, _ = str.Write(binary.AppendUvarint(nil, uint64(proto.MaxRequestFrame)))
	_ = str.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = str.Read(make([]byte, 1))
	var se *quic.StreamError
	if !errors.As(err, &se) || se.ErrorCode != proto.Code_OVERLOADED.StreamCode() {
		t.Fatalf("a third large call: %v, want the stream reset OVERLOADED", err)
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "large_calls"}); n != 1 {
		t.Errorf("large_calls = %v", n)
	}

	rawConn(t, h, id) // the second connection of this key
	// relay counts a connection once its handler runs, which can be after
	// the client's handshake ends: a third dialled before that would race
	// the second for the last place.
	testutil.Eventually(t, 5*time.Second, "both connections counted", func() bool { return h.Metric("relay_worker_connections", nil) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	third, err := quic.DialAddr(ctx, h.Addr, proto.ClientTLS(id, h.ID.Pin()), proto.QUICOptions{}.Config(false))
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-third.Context().Done():
	case <-ctx.Done():
		t.Fatal("a third connection of one key stayed open")
	}
	var ae *quic.ApplicationError
	if err := context.Cause(third.Context()); !errors.As(err, &ae) || ae.ErrorCode != proto.Code_OVERLOADED.AppCode() {
		t.Fatalf("third connection closed with %v, want OVERLOADED", err)
	}
	if n := h.Metric("relay_refused_total", map[string]string{"reason": "connection_limit"}); n != 1 {
		t.Errorf("connection_limit = %v", n)
	}
}
