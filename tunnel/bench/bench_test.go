package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel/bench/node"
)

// The test binary doubles as a node process.
func TestMain(m *testing.M) {
	if os.Getenv("TUNNEL_BENCH_TEST_NODE") == "1" {
		if err := node.Main(context.Background(), os.Stdin, os.Stdout); err != nil {
			os.Stderr.WriteString(err.Error() + "\n")
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func short() Options {
	return Options{Duration: 300 * time.Millisecond, Repeats: 1, Streams: []int{1, 2}, RTTs: 200}
}

func checkResults(t *testing.T, rep *Report, n int) {
	t.Helper()
	if len(rep.Results) != n {
		t.Fatalf("%d results, want %d", len(rep.Results), n)
	}
	for _, r := range rep.Results {
		if r.Err != "" {
			t.Fatalf("%s: %s", r.Variant.Name, r.Err)
		}
		if len(r.TCP) == 0 || r.RTTp50 <= 0 || r.RTTp99 < r.RTTp50 {
			t.Fatalf("%s: empty figures %+v", r.Variant.Name, r)
		}
		for _, bps := range r.TCP {
			if bps <= 0 {
				t.Fatalf("%s: no throughput %+v", r.Variant.Name, r)
			}
		}
	}
}

func TestRunInProcess(t *testing.T) {
	o := short()
	o.Variants = []Variant{Raw, Stock, Tunnel}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 3)
	if rep.Results[1].Ratio != 1 || rep.Results[2].Ratio <= 0 {
		t.Fatalf("ratios: stock %v, tunnel %v", rep.Results[1].Ratio, rep.Results[2].Ratio)
	}
	var table, js, svg bytes.Buffer
	rep.WriteTable(&table)
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := rep.WriteSVG(&svg); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"raw loopback", "stock tun/netstack", "tunnel", "× stock", "MB/s"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Results) != 3 {
		t.Fatalf("JSON does not round-trip: %v", err)
	}
	if !strings.HasPrefix(svg.String(), "<svg") || strings.Count(svg.String(), "<rect") != 3 {
		t.Fatalf("SVG: %.200s", svg.String())
	}
	// The floor check compares ratios, nothing else.
	if err := rep.Check(rep.Results[2].Ratio / 2); err != nil {
		t.Errorf("check below the ratio: %v", err)
	}
	if err := rep.Check(rep.Results[2].Ratio * 2); err == nil {
		t.Error("check above the ratio passed")
	}
}

func TestRunProcesses(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TUNNEL_BENCH_TEST_NODE", "1")
	o := short()
	o.Variants = []Variant{Stock, Tunnel}
	o.NodeCommand = []string{exe}
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 2)
	for _, r := range rep.Results {
		if r.PeakRSS == 0 || r.CPUPerGB <= 0 {
			t.Errorf("%s: no per-process figures: RSS %d, CPU/GB %v", r.Variant.Name, r.PeakRSS, r.CPUPerGB)
		}
	}
}

// The emulated link really delays, drops and reorders, and the tunnel
// still carries TCP across it.
func TestEmulatedLink(t *testing.T) {
	o := short()
	o.Variants = []Variant{Tunnel}
	o.Streams = []int{1}
	o.RTTs = 50
	o.Link = Link{Delay: 5 * time.Millisecond, Loss: 0.01, Reorder: 0.01}
	o.Logger = testutil.Logger(t)
	rep, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	checkResults(t, rep, 1)
	if p50 := rep.Results[0].RTTp50; p50 < 10*time.Millisecond {
		t.Fatalf("round trip %v across a link with 5 ms each way", p50)
	}
}

// The footprint measures a real gateway process: start to ready, idle
// memory, and memory per idle flow.
// The footprint runs gateways from the lean tunnel-gateway when it lies
// beside tunnel, as make build leaves them, and from tunnel itself when
// it does not.
func TestFootprint(t *testing.T) {
	for _, tc := range []struct {
		name string
		lean bool
	}{{"tunnel only", false}, {"tunnel-gateway beside", true}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			exe := filepath.Join(dir, "tunnel")
			pkgs := []string{"github.com/tunnel-dev/tunnel/tunnel/cmd/tunnel"}
			if tc.lean {
				pkgs = append(pkgs, "github.com/tunnel-dev/tunnel/tunnel/cmd/tunnel-gateway")
			}
			build := exec.Command("go", append([]string{"build", "-o", dir + "/"}, pkgs...)...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("building %v: %v\n%s", pkgs, err, out)
			}
			cmds := CommandsFor(exe)
			if cmds.Lean != tc.lean {
				t.Fatalf("CommandsFor(%s) = %+v, want lean %v", exe, cmds, tc.lean)
			}
			o := short()
			o.Variants = []Variant{Tunnel}
			o.Streams = []int{1}
			o.RTTs = 20
			o.NodeCommand, o.GatewayCommand = cmds.Node, cmds.Gateway
			o.Footprint = true
			o.Flows = 50
			rep, err := Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			f := rep.Footprint
			if f == nil || f.StartToReady <= 0 || f.IdleRSS == 0 || f.Flows != 50 {
				t.Fatalf("footprint %+v", f)
			}
			if len(rep.Results) != 1 || rep.Results[0].Err != "" || rep.Results[0].TCP[1] <= 0 {
				t.Fatalf("the gateways of %v carried nothing: %+v", cmds.Node, rep.Results)
			}
			var table bytes.Buffer
			rep.WriteTable(&table)
			if !strings.Contains(table.String(), "start to ready") {
				t.Fatalf("table lacks the footprint:\n%s", table.String())
			}
			t.Logf("%v: footprint %+v", cmds.Node, *f)
		})
	}
}
