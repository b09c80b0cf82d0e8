package e2e

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/tunnel/demo"
)

// TestDemo runs what `make demo` runs, unprivileged: relay, both gateways
// and bunny as processes on loopback, jobs through the tunnel, every
// result checked, the scope proved.
func TestDemo(t *testing.T) {
	dir := filepath.Dir(bin(t, "tunnel"))
	bin(t, "relay")
	bin(t, "bunny")
	var out bytes.Buffer
	sum, err := demo.Run(context.Background(), demo.Options{BinDir: dir, Jobs: 500, Concurrency: 8, Timeout: 90 * time.Second, Out: &out})
	t.Logf("demo output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 500 || sum.Jobs != 500 {
		t.Errorf("%d of %d jobs succeeded, want 500", sum.Succeeded, sum.Jobs)
	}
	if sum.P50 <= 0 || sum.P99 < sum.P50 || sum.JobsPerSecond() <= 0 {
		t.Errorf("figures: p50 %v p99 %v, %.0f jobs/s", sum.P50, sum.P99, sum.JobsPerSecond())
	}
	// 500 KiB of payload went up and 500 hashes came back, through the tunnel.
	if sum.TunnelRx < 500*1024 {
		t.Errorf("the aks gateway received %d B from its peer, want at least the payloads", sum.TunnelRx)
	}
	if sum.IngressRefused == 0 {
		t.Error("the scope probes reached eks but nothing was counted as refused")
	}
	if !strings.Contains(out.String(), "scope: ") {
		t.Error("the demo printed no scope line")
	}
}

// TestDemoHA runs `tunnel demo --ha`: two gateways a side on loopback,
// aks-a (the one bunny starts on) SIGKILLed half-way and restarted. Every
// job succeeds with the right result at its first attempt; the demo
// reports the pause it measured and the rejoin.
func TestDemoHA(t *testing.T) {
	dir := filepath.Dir(bin(t, "tunnel"))
	bin(t, "relay")
	bin(t, "bunny")
	var out bytes.Buffer
	sum, err := demo.Run(context.Background(), demo.Options{BinDir: dir, Jobs: 1500, Concurrency: 8, Timeout: 2 * time.Minute, HA: true, Out: &out})
	t.Logf("demo --ha output:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if sum.Succeeded != 1500 || sum.Jobs != 1500 || sum.Retried != 0 {
		t.Errorf("%d of %d jobs succeeded, %d retried; want 1500, none retried", sum.Succeeded, sum.Jobs, sum.Retried)
	}
	if sum.Killed != "aks-a" || sum.Pause <= 0 || sum.Rejoin <= 0 {
		t.Errorf("failover figures: killed %q, pause %v, rejoin %v", sum.Killed, sum.Pause, sum.Rejoin)
	}
	if !strings.Contains(out.String(), "failover: gateway aks-a killed mid-run; longest pause between handled jobs") {
		t.Error("the demo printed no failover line")
	}
	t.Logf("pause after killing aks-a: %v; rejoin %v", sum.Pause, sum.Rejoin)
}
