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
	if len(lines) != 3 || strings.Join(strings.Fields(lines[0]), " ") != "QUEUE QUEUED LEASED RETRYING SUCCEEDED FAILED DEAD CANCELLED OLDEST QUEUED" {
		t.Fatalf("queues printed:\n%s", out)
	}
	if f := strings.Fields(lines[1]); len(f) != 9 || f[0] != "a" || f[1] != "2" || f[2] != "0" || !strings.HasSuffix(f[8], "s") {
		t.Fatalf("queue a's row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); len(f) != 9 || f[0] != "b" || f[1] != "1" {
		t.Fatalf("queue b's row %q", lines[2])
	}

	// producer-a may read only a.
	t.Setenv("RELAY_TOKEN", "")
	code, out, errOut = runCLI(t, append([]string{"queues", srv, "--json"}, s.producerAFlags()...)...)
	var resp api.QueuesResponse
	if code != 0 || json.Unmarshal([]byte(out), &resp) != nil || len(resp.Queues) != 1 || resp.Queues[0].Name != "a" || resp.Queues[0].Counts["queued"] != 2 {
		t.Fatalf("queues --json as producer-a: exit %d, %q, %s", code, out, errOut)
	}
	if code, _, errOut = runCLI(t, "queues", srv); code != 2 || !strings.Contains(errOut, "no credentials") {
		t.Fatalf("queues without credentials: exit %d, %s", code, errOut)
	}
}
