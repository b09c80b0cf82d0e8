package main

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/worker"
	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// freeAddr is a loopback TCP address nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// bunny status of a bunny that works: connected, its slots, and the jobs
// it did; found through the config file's admin.listen.
func TestStatusConnected(t *testing.T) {
	bin := buildBunny(t)
	f := newFiles(t)
	r := relaytest.Start(t, relaytest.Options{Worker: f.id, Queues: []string{"default"}})
	cfg := f.config(t, r.Addr, r.ID.Pin(), "concurrency: 3", "/bin/sh", "-c", `if [ "$(cat)" = bad ]; then exit 3; fi; echo ok`)
	body, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(body), "127.0.0.1:0", freeAddr(t), 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	startBunny(t, bin, "run", "--config", cfg, "--log-format", "json")
	ids := r.Enqueue(queue.NewJob{Queue: "default", Payload: []byte("good")}, queue.NewJob{Queue: "default", Payload: []byte("bad"), MaxAttempts: 1})
	for _, j := range r.WaitTerminal(30*time.Second, ids...) {
		if j.State != store.Succeeded && j.State != store.Dead {
			t.Fatalf("job %s: %s", j.ID, j.State)
		}
	}
	var st bunnyStatus
	testutil.Eventually(t, 10*time.Second, "both jobs counted in /status", func() bool {
		code, out, _ := runInProcess("status", "--config", cfg, "--json")
		return code == 0 && json.Unmarshal([]byte(out), &st) == nil && len(st.Queues) == 1 && st.Queues[0].Succeeded+st.Queues[0].Failed == 2
	})
	if !st.Connected || st.Since.IsZero() || st.Relay != r.Addr || st.Slots != 3 || st.Busy != 0 || st.Worker != "bunny-1" || st.Version != "v9.9.9-test" ||
		st.Queues[0] != (worker.QueueStatus{Name: "default", Succeeded: 1, Failed: 1}) || st.Problem != nil {
		t.Fatalf("status %+v", st)
	}
	code, out, errOut := runInProcess("status", "-c", cfg)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"bunny v9.9.9-test (feedface)", "relay " + r.Addr + ": connected since ", "slots: 0 busy, 3 free of 3", "default  0        1          1"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status printed no %q:\n%s", want, out)
		}
	}
	t.Logf("bunny status:\n%s", out)
}

// bunny status of a bunny that cannot connect: never connected, and the
// last problem with what to check.
func TestStatusNotConnected(t *testing.T) {
	bin := buildBunny(t)
	f := newFiles(t)
	r := relaytest.Start(t, relaytest.Options{Worker: f.id, Queues: []string{"default"}})
	cfg := f.config(t, r.Addr, f.id.Pin(), "", "cat") // bunny's own pin: not relay's
	p := startBunny(t, bin, "run", "--config", cfg, "--log-format", "json")
	adminURL := p.adminURL(t)
	var out string
	testutil.Eventually(t, 20*time.Second, "the problem in status", func() bool {
		var code int
		code, out, _ = runInProcess("status", "--admin", adminURL)
		return code == 0 && strings.Contains(out, "last problem")
	})
	for _, want := range []string{"relay " + r.Addr + ": NOT CONNECTED, never since start", "is not the pinned relay", "hint: relay.pin must be relay's pin", "slots: 0 busy, 4 free of 4"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status printed no %q:\n%s", want, out)
		}
	}
	t.Logf("bunny status:\n%s", out)

	// Another process's /status is refused, not printed.
	other, err := admin.Start(context.Background(), admin.Options{Addr: "127.0.0.1:0", Handlers: map[string]http.Handler{
		"/status": admin.JSON(func() any { return map[string]string{"name": "tunnel0"} })}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if code, _, errOut := runInProcess("status", "--admin", other.URL()); code != 1 || !strings.Contains(errOut, "is not bunny's") {
		t.Fatalf("status of another endpoint: exit %d: %s", code, errOut)
	}

	// Nothing there: the error names where it looked and what to give.
	code, _, errOut := runInProcess("status", "--admin", freeAddr(t))
	if code != 1 || !strings.Contains(errOut, "nothing listens there (--admin)") || !strings.Contains(errOut, "--config FILE") {
		t.Fatalf("status of nothing: exit %d: %s", code, errOut)
	}
}
