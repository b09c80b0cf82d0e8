//go:build linux

package bench

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/netns"
)

// The production shape end to end: two namespaces over a veth, every row
// as real processes (our gateways as root and as UID 65532, stock,
// wireguard-go on kernel TUN devices), iperf3 at both ends.
func TestRunNetns(t *testing.T) {
	netns.Require(t, "tc", "iperf3")
	if testing.Short() {
		t.Skip("builds wireguard-go and runs every row")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TUNNEL_BENCH_TEST_NODE", "1")
	wg, err := BuildWireGuardGo(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	// A few QUIC flows at full load: this proves the harness runs and
	// reports every row; the load itself is the benchmark's.
	o := NetnsOptions{Duration: time.Second, Repeats: 1, Streams: []int{1}, RTTs: 50, QUICFlows: 8,
		NodeCommand: []string{exe}, WireGuardGo: wg, Link: Link{Delay: time.Millisecond}}
	if _, err := exec.LookPath("/usr/bin/wireguard-go"); err == nil {
		o.Peers = []Peer{{Name: "Debian wireguard-go", Path: "/usr/bin/wireguard-go"}}
	}
	rep, err := RunNetns(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if want := 4 + len(o.Peers); len(rep.Results) != want {
		t.Fatalf("%d rows, want %d", len(rep.Results), want)
	}
	for _, r := range rep.Results {
		if r.Err != "" {
			t.Fatalf("%s: %s", r.Variant.Name, r.Err)
		}
		if r.TCP[1] <= 0 || r.Runs != 1 || r.RTTp50 < 2*time.Millisecond || len(r.Gateways) != 2 {
			t.Fatalf("%s: figures %+v", r.Variant.Name, r)
		}
		for _, g := range r.Gateways {
			if g.PeakRSS == 0 || g.CPUPerGB <= 0 {
				t.Errorf("%s: gateway %s: no CPU or memory figure %+v", r.Variant.Name, g.Name, g)
			}
		}
	}
	if rep.Results[0].AnchorRatio != 1 || rep.Results[2].AnchorRatio <= 0 {
		t.Fatalf("anchor ratios %v, %v", rep.Results[0].AnchorRatio, rep.Results[2].AnchorRatio)
	}
	for _, ns := range []string{netns.Name("tbnsa"), netns.Name("tbnsb")} {
		if _, err := os.Stat("/var/run/netns/" + ns); err == nil {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}
