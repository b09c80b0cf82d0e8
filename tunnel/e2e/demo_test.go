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
