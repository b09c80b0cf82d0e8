package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/client"
)

// startForCLI runs relay for the CLI's tests: the --server flag to
// reach it, and its pin and producer admin's token in the environment.
func startForCLI(t *testing.T) (*setup, *proc, string) {
	t.Helper()
	s := newSetup(t)
	p := startRelay(t, s)
	t.Setenv("RELAY_SERVER_PIN", s.relayPin.String())
	t.Setenv("RELAY_TOKEN", s.token)
	return s, p, "--server=" + p.http
}

// producerAFlags are the credential flags of producer-a (enqueue and read
// on queue a only).
func (s *setup) producerAFlags() []string {
	return []string{"--client-cert", filepath.Join(s.dir, "producer-a", keys.IdentityCertFile), "--client-key", filepath.Join(s.dir, "producer-a", keys.IdentityKeyFile)}
}

// serveOne leases one job from queue default and completes it with
// "done:"+payload, or fails it permanently when the payload is "bad".
func serveOne(ctx context.Context, t *testing.T, p *proc, s *setup) <-chan error {
	t.Helper()
	c, err := p.dial(ctx, s, s.bunny)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	done := make(chan error, 1)
	go func() {
		jobs, err := c.Lease(ctx, client.LeaseOptions{Queues: []string{"default"}, Max: 1, Wait: 10 * time.Second})
		if err == nil && len(jobs) != 1 {
			err = context.DeadlineExceeded
		}
		if err != nil {
			done <- err
			return
		}
		j := jobs[0]
		if string(j.Payload) == "bad" {
			_, err = c.Fail(ctx, j.Lease, "the payload was bad", client.FailOptions{Permanent: true})
		} else {
			_, err = c.Complete(ctx, j.Lease, []byte("done:"+string(j.Payload)))
		}
		done <- err
	}()
	return done
}

// submit --wait prints a succeeded job's result, exits 1 with a failed
// job's error, and gives up at --wait-timeout.
func TestJobsSubmitWait(t *testing.T) {
	s, p, srv := startForCLI(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	done := serveOne(ctx, t, p, s)
	code, out, errOut := runCLI(t, "jobs", srv, "submit", "-q", "default", "-p", "hello", "--wait")
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	if code != 0 || out != "done:hello" {
		t.Fatalf("submit --wait: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	done = serveOne(ctx, t, p, s)
	code, out, errOut = runCLI(t, "jobs", srv, "submit", "-q", "default", "-p", "bad", "--wait")
	if err := <-done; err != nil {
		t.Fatalf("worker: %v", err)
	}
	if code != 1 || out != "" || !strings.Contains(errOut, "ended failed") || !strings.Contains(errOut, "the payload was bad") {
		t.Fatalf("submit --wait of a failing job: exit %d, stdout %q, stderr %s", code, out, errOut)
	}

	// No worker: the job stays queued.
	code, out, errOut = runCLI(t, "jobs", srv, "submit", "-q", "nobody", "-p", "x", "--wait", "--wait-timeout", "300ms")
	if code != 1 || out != "" || !strings.Contains(errOut, "still queued after 300ms (--wait-timeout)") {
		t.Fatalf("submit --wait with no worker: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	code, _, errOut = runCLI(t, "jobs", srv, "submit", "-q", "refused", "-p", "x", "--wait", "--wait-timeout", "0s")
	if code != 2 || !strings.Contains(errOut, "--wait-timeout") {
		t.Fatalf("submit --wait-timeout 0s: exit %d, stderr %s", code, errOut)
	}
	if l, err := p.api(s).List(ctx, api.ListOptions{Queue: "refused"}); err != nil || len(l.Jobs) != 0 {
		t.Fatalf("a refused --wait-timeout enqueued %v (%v)", l.Jobs, err)
	}
}

// relay jobs delete removes finished jobs, and says which one it could
// not delete and why.
func TestJobsDelete(t *testing.T) {
	_, _, srv := startForCLI(t)
	var ids []string
	for range 2 {
		code, out, errOut := runCLI(t, "jobs", srv, "submit", "-q", "default", "-p", "x")
		var j api.Job
		if code != 0 || json.Unmarshal([]byte(out), &j) != nil {
			t.Fatalf("submit: exit %d, %s", code, errOut)
		}
		ids = append(ids, j.ID)
	}
	if code, _, errOut := runCLI(t, "jobs", srv, "cancel", ids[0]); code != 0 {
		t.Fatalf("cancel: %s", errOut)
	}
	code, out, errOut := runCLI(t, "jobs", srv, "delete", ids[0], ids[1])
	if code == 0 || strings.TrimSpace(out) != "deleted "+ids[0]+" (cancelled, queue default)" ||
		!strings.Contains(errOut, "job "+ids[1]) || !strings.Contains(errOut, "it is queued") || !strings.Contains(errOut, "409") {
		t.Fatalf("delete a cancelled and a queued job: exit %d, %q, %s", code, out, errOut)
	}
	if code, _, errOut = runCLI(t, "jobs", srv, "get", ids[0]); code == 0 || !strings.Contains(errOut, "not found") {
		t.Fatalf("get after delete: exit %d, %s", code, errOut)
	}
}
