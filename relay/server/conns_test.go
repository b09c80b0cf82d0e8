package server_test

import (
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
)

// Connections lists each open worker connection with its name, key,
// address and start, oldest first, and forgets one once it closes.
func TestConnections(t *testing.T) {
	a, b := testutil.Identity(t, "a"), testutil.Identity(t, "b")
	q := map[string]string{"q": relaytest.AllActions}
	r := startRelay(t, relaytest.Options{},
		relaytest.Worker{Name: "a", IDs: []keys.Identity{a}, Queues: q}, relaytest.Worker{Name: "b", IDs: []keys.Identity{b}, Queues: q})
	srv := r.Server()
	if got := srv.Connections(); len(got) != 0 {
		t.Fatalf("before any worker: %+v", got)
	}
	ca := r.Dial(a)
	testutil.Eventually(t, 5*time.Second, "a connected", func() bool { return len(srv.Connections()) == 1 })
	cb := r.Dial(b)
	testutil.Eventually(t, 5*time.Second, "b connected", func() bool { return len(srv.Connections()) == 2 })
	got := srv.Connections()
	if got[0].Worker != "a" || got[0].Pin != a.Pin() || got[1].Worker != "b" || got[1].Pin != b.Pin() {
		t.Fatalf("connections %+v, want a then b with their pins", got)
	}
	for _, c := range got {
		if c.Remote == nil || c.Since.IsZero() || time.Since(c.Since) > time.Minute {
			t.Fatalf("connection %+v: want its remote address and start", c)
		}
	}
	_ = ca.Close()
	testutil.Eventually(t, 5*time.Second, "a's connection forgotten", func() bool {
		got := srv.Connections()
		return len(got) == 1 && got[0].Worker == "b"
	})
	_ = cb.Close()
}
