package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/relay/api"
)

// relay queues against a running relay: counts by state, the oldest
// queued job's age, and only the queues the producer may read.
func TestQueuesCommand(t *testing.T) {
	s, _, srv := startForCLI(t)
	for _, q := range []string{"a", "a", "b"} {
		if code, _, errOut := runCLI(t, "jobs", srv, "submit", "-q", q, "-p", "x"); code != 0 {
			t.Fatalf("submit: %s", errOut)
		}
	}
	code, out, errOut := runCLI(t, "queues", srv)
	if code != 0 {
		t.Fatalf("queues: exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "QUEUE QUEUED LEASED RETRYING SUCCEEDED FAILED DEAD CANCELLED OLDEST QUEUED PAUSED IN/S DONE/S FAILED/S" {
		t.Fatalf("queues printed:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 13 || f[0] != "a" || f[1] != "2" || f[2] != "0" || !strings.HasSuffix(f[8], "s") || f[9] != "no" || f[10] != "0.033" || f[11] != "0" || f[12] != "0" {
		t.Fatalf("queue a's row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); len(f) != 13 || f[0] != "b" || f[1] != "1" || f[10] != "0.017" {
		t.Fatalf("queue b's row %q", lines[2])
	}

	// Pause b: the table says so, and list is the default subcommand.
	code, out, errOut = runCLI(t, "queues", srv, "pause", "b")
	if code != 0 || strings.TrimSpace(out) != "queue b paused: its jobs are not leased until relay queues resume b" {
		t.Fatalf("queues pause b: exit %d, %q, %s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "queues", srv, "list")
	lines = strings.Split(strings.TrimSpace(out), "\n")
	if f := strings.Fields(lines[len(lines)-1]); code != 0 || len(f) != 13 || f[0] != "b" || f[9] != "yes" {
		t.Fatalf("queues list after pausing b: exit %d, %q, %s", code, out, errOut)
	}
	code, out, errOut = runCLI(t, "queues", srv, "--json", "resume", "b")
	var pr api.PauseResponse
	if code != 0 || json.Unmarshal([]byte(out), &pr) != nil || pr != (api.PauseResponse{Name: "b", Paused: false}) {
		t.Fatalf("queues --json resume b: exit %d, %q, %s", code, out, errOut)
	}
	if code, _, errOut = runCLI(t, "queues", srv, "pause", "no such name"); code == 0 || !strings.Contains(errOut, "queue") {
		t.Fatalf("pausing a bad name: exit %d, %s", code, errOut)
	}

	// producer-a may read only a.
	t.Setenv("RELAY_TOKEN", "")
	code, out, errOut = runCLI(t, append([]string{"queues", srv, "--json"}, s.producerAFlags()...)...)
	var resp api.QueuesResponse
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || len(resp.Queues) != 1 || resp.Queues[0].Name != "a" || resp.Queues[0].Counts["queued"] != 2 {
		t.Fatalf("queues --json as producer-a: exit %d, %q, %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, append([]string{"queues", srv, "pause", "b"}, s.producerAFlags()...)...)
	if code == 0 || !strings.Contains(errOut, "may not cancel jobs of queue b") {
		t.Fatalf("producer-a paused b: exit %d, %s", code, errOut)
	}
	if code, _, errOut = runCLI(t, "queues", srv); code != 2 || !strings.Contains(errOut, "no credentials") {
		t.Fatalf("queues without credentials: exit %d, %s", code, errOut)
	}
}

func TestPerSecond(t *testing.T) {
	for _, tc := range []struct {
		v    float64
		want string
	}{{0, "0"}, {1.0 / 60, "0.017"}, {2.345, "2.35"}, {41.66, "41.7"}, {1250.4, "1250"}} {
		if got := perSecond(tc.v); got != tc.want {
			t.Errorf("perSecond(%v) = %q, want %q", tc.v, got, tc.want)
		}
	}
}
