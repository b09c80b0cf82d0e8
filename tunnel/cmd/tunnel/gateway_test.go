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

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// A reload still running when the signal comes finishes before the drain
// begins. The reload here stops a forward rule whose one flow is stuck
// dialling a peer that never answers, so it lasts until that dial times
// out; the signal arrives meanwhile. Its log line must come before
// "signal received; draining".
func TestGatewayWaitsForReloadBeforeShutdown(t *testing.T) {
	dir := t.TempDir()
	path, _ := gatewayConfig(t, dir)
	held, adminAddr := freeTCPAddr(t), freeTCPAddr(t)
	body, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	base := strings.Replace(string(body), "127.0.0.1:0", adminAddr, 1) + "limits: {tcpDialTimeout: 2s}\n"
	writeConfig(t, dir, base+`forward: [{name: held, protocol: tcp, listen: "`+held+`", peer: bunny, to: "10.99.0.2:80"}]`+"\n")

	var logs testutil.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var runErr error
	done := make(chan struct{})
	cmd := &gatewayCmd{Config: path, DrainTimeout: 10 * time.Second, ReloadEvery: 20 * time.Millisecond,
		Logging: cli.Logging{LogFormat: "text", LogLevel: "info"}}
	go func() { defer close(done); runErr = cmd.Run(ctx, cli.Env{Stdout: &logs, Stderr: &logs}) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})

	testutil.Eventually(t, 10*time.Second, "the gateway to be up", func() bool { return strings.Contains(logs.String(), "gateway up") })
	c, err := net.Dial("tcp", held)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	testutil.Eventually(t, 10*time.Second, "the flow to be dialling the peer", func() bool { return activeFlows(adminAddr, "held") == 1 })

	writeConfig(t, dir, base)
	testutil.Eventually(t, 10*time.Second, "the reload to stop the rule's listener", func() bool {
		c, err := net.DialTimeout("tcp", held, 200*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	if strings.Contains(logs.String(), "configuration reloaded") {
		t.Fatal("the reload finished before the signal; the test proves nothing")
	}
	cancel()
	select {
	case <-done:
		if runErr != nil {
			t.Fatalf("gateway: %v", runErr)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("the gateway did not stop")
	}
	out := logs.String()
	reloaded, draining := strings.Index(out, "configuration reloaded"), strings.Index(out, "signal received; draining")
	if reloaded < 0 || draining < 0 || reloaded > draining {
		t.Fatalf("want the reload logged (at %d) before the drain (at %d)", reloaded, draining)
	}
}

// activeFlows reads a rule's open flows from the admin server's /status;
// -1 if it cannot.
func activeFlows(adminAddr, rule string) int {
	resp, err := http.Get("http://" + adminAddr + "/status")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var st tunnel.Status
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return -1
	}
	for _, r := range st.Rules {
		if r.Name == rule {
			return int(r.Active)
		}
	}
	return -1
}

// freeTCPAddr is a loopback address nothing listens on at the moment.
func freeTCPAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
