package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/client"
)

// relay status against a running relay with a worker holding a lease:
// the store, the worker with its address and lease, and the queues.
func TestStatusCommand(t *testing.T) {
	s, p, srv := startForCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for range 2 {
		if code, _, errOut := runCLI(t, "jobs", srv, "submit", "-q", "default", "-p", "x"); code != 0 {
			t.Fatalf("submit: %s", errOut)
		}
	}
	c, err := p.dial(ctx, s, s.bunny)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if jobs, err := c.Lease(ctx, client.LeaseOptions{Queues: []string{"default"}, Max: 1, Wait: 5 * time.Second}); err != nil || len(jobs) != 1 {
		t.Fatalf("lease: %v, %d jobs", err, len(jobs))
	}

	var st relayStatus
	testutil.Eventually(t, 10*time.Second, "the worker in /status", func() bool {
		code, out, _ := runCLI(t, "status", "--admin", p.admin, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st.Workers) == 1
	})
	w := st.Workers[0]
	if w.Name != "bunny" || w.Pin != s.bunny.Pin().String() || w.Leases != 1 || time.Since(w.Since) > time.Minute {
		t.Fatalf("worker %+v", w)
	}
	if host, _, err := net.SplitHostPort(w.Address); err != nil || host != "127.0.0.1" {
		t.Fatalf("worker address %q", w.Address)
	}
	if st.Store.Kind != "bbolt" || !st.Store.Ready || st.Version == "" || len(st.Queues) != 1 || st.Queues[0].Counts["leased"] != 1 || st.Queues[0].Counts["queued"] != 1 {
		t.Fatalf("status %+v", st)
	}

	code, out, errOut := runCLI(t, "status", "--admin", strings.TrimPrefix(p.admin, "http://"))
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"store: bbolt ", ", ready\n", "WORKER  ADDRESS", "bunny   127.0.0.1:", "QUEUE", "default  1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status printed no %q:\n%s", want, out)
		}
	}
	t.Logf("relay status:\n%s", out)

	// The worker goes: so does its row.
	_ = c.Close()
	testutil.Eventually(t, 10*time.Second, "the worker gone from /status", func() bool {
		code, out, _ := runCLI(t, "status", "--admin", p.admin)
		return code == 0 && strings.Contains(out, "no worker connected")
	})

	// Another process's /status (a gateway's) is refused, not printed.
	gw, err := admin.Start(ctx, admin.Options{Addr: "127.0.0.1:0", Handlers: map[string]http.Handler{
		"/status": admin.JSON(func() any { return map[string]string{"name": "tunnel0"} })}})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if code, _, errOut := runCLI(t, "status", "--admin", gw.URL()); code != 1 || !strings.Contains(errOut, "/status is not relay's") {
		t.Fatalf("status of a gateway's endpoint: exit %d: %s", code, errOut)
	}

	// Nothing there: the error says what to point at.
	p.kill()
	code, _, errOut = runCLI(t, "status", "--admin", p.admin)
	if code != 1 || !strings.Contains(errOut, "nothing listens there") || !strings.Contains(errOut, "--admin") {
		t.Fatalf("status of a stopped relay: exit %d: %s", code, errOut)
	}
}
