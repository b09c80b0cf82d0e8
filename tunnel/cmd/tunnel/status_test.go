package main

import (
	"context"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

func TestSocketLine(t *testing.T) {
	tests := []struct {
		st   tunnel.Status
		want string
	}{
		{tunnel.Status{ListenPort: 51820}, "WireGuard listening on udp/51820"},
		{tunnel.Status{ListenPort: 39355, DialOnly: true, Peers: []tunnel.PeerStatus{{Endpoint: "203.0.113.7:51820"}}},
			"WireGuard socket connected to 203.0.113.7:51820 from udp/39355, listening on no port"},
		{tunnel.Status{DialOnly: true}, "WireGuard dials its peer (no endpoint yet), listening on no port"},
	}
	for _, tt := range tests {
		if got := socketLine(tt.st); got != tt.want {
			t.Errorf("socketLine(%+v) = %q, want %q", tt.st, got, tt.want)
		}
	}
}

// The config file alone names the device, its UAPI directory and the
// admin endpoint; without it the defaults apply and the name is learnt
// from the admin endpoint.
func TestStatusTarget(t *testing.T) {
	dir := t.TempDir()
	path, _ := gatewayConfig(t, dir)
	ctx := context.Background()
	got, err := (&statusCmd{Config: path}).target(ctx)
	if want := (statusTarget{admin: "http://127.0.0.1:0", name: "clitest", uapiDir: filepath.Join(dir, "run"), note: "admin.listen in " + path}); err != nil || got != want {
		t.Errorf("--config: %+v %v, want %+v", got, err, want)
	}
	// No gateway's socket in the directory: the default admin address.
	got, err = findGateway(ctx, filepath.Join(dir, "run"), "", "")
	if err != nil || got.admin != "http://"+config.DefaultAdminListen || got.name != "" || !strings.Contains(got.note, "no gateway's UAPI socket answers in") {
		t.Errorf("no flags, no gateway: %+v %v", got, err)
	}
	if _, err := (&statusCmd{Config: filepath.Join(dir, "none.yaml")}).target(ctx); err == nil {
		t.Error("a missing config file was accepted")
	}
}

func TestUpstreamLine(t *testing.T) {
	r := tunnel.RuleStatus{
		Upstreams: []tunnel.UpstreamStatus{
			{Peer: "eks-a", To: netip.MustParseAddrPort("10.99.0.1:7443"), Reason: "keepalive_missed", SilentFor: 3100 * time.Millisecond},
			{Peer: "eks-b", To: netip.MustParseAddrPort("10.99.0.11:7443"), Healthy: true, InUse: true},
		},
		Failovers: []tunnel.FailoverStatus{{From: "eks-a/10.99.0.1:7443", To: "eks-b/10.99.0.11:7443", Reason: "keepalive_missed", Count: 1}},
	}
	want := "eks-a 10.99.0.1:7443 down: keepalive_missed, silent 3.1s; → eks-b 10.99.0.11:7443 (in use); " +
		"failovers: eks-a/10.99.0.1:7443→eks-b/10.99.0.11:7443 keepalive_missed ×1"
	if got := upstreamLine(r); got != want {
		t.Errorf("upstreamLine = %q\nwant          %q", got, want)
	}
}

// checkDiscovery: with the gateway of path running (its UAPI socket in
// dir/run), status needs no flag: the socket names the gateway and the
// process holding it its admin endpoint. A second gateway in the same
// directory makes status ask which.
func checkDiscovery(t *testing.T, bin, dir, adminAddr string) {
	t.Helper()
	ctx := context.Background()
	run := filepath.Join(dir, "run")
	got, err := findGateway(ctx, run, "", "")
	if err != nil || got.name != "clitest" || got.admin != "http://"+adminAddr || !strings.Contains(got.note, "found from the process holding "+filepath.Join(run, "clitest.sock")) {
		t.Fatalf("no flags: %+v %v; want clitest at http://%s", got, err, adminAddr)
	}
	if got, err = findGateway(ctx, run, "clitest", ""); err != nil || got.admin != "http://"+adminAddr {
		t.Fatalf("--name clitest: %+v %v", got, err)
	}

	// A second gateway, clitest2, beside it.
	dir2 := t.TempDir()
	path2, _ := gatewayConfig(t, dir2)
	body, err := os.ReadFile(path2)
	if err != nil {
		t.Fatal(err)
	}
	body = []byte(strings.NewReplacer("name: clitest\n", "name: clitest2\n", filepath.Join(dir2, "run"), run).Replace(string(body)))
	if err := os.WriteFile(path2, body, 0o644); err != nil {
		t.Fatal(err)
	}
	var logs testutil.Buffer
	cmd := exec.Command(bin, "gateway", "--config", path2)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	testutil.Eventually(t, 15*time.Second, "the second gateway's UAPI socket", func() bool {
		names, _ := runningGateways(run)
		return len(names) == 2
	})
	_, err = findGateway(ctx, run, "", "")
	if want := "2 gateways run here (UAPI sockets in " + run + "): clitest, clitest2; pick one with --name NAME or --config FILE"; err == nil || err.Error() != want {
		t.Fatalf("two gateways, no flags: %v; want %q", err, want)
	}
	// The UAPI socket is up a moment before the admin endpoint: wait for
	// the gateway to serve it.
	testutil.Eventually(t, 15*time.Second, "the second gateway's admin endpoint found from its socket", func() bool {
		got, err = findGateway(ctx, run, "clitest2", "")
		return err == nil && strings.Contains(got.note, "found from the process holding")
	})
	if err != nil || got.admin == "http://"+adminAddr || !strings.Contains(got.note, "found from the process holding") {
		t.Fatalf("--name clitest2: %+v %v\n%s", got, err, logs.String())
	}
}

// procAddr reads /proc/net/tcp's hex addresses.
func TestProcAddr(t *testing.T) {
	for in, want := range map[string]string{
		"0100007F:2382":                         "127.0.0.1:9090",
		"00000000:1F90":                         "0.0.0.0:8080",
		"00000000000000000000000001000000:2382": "[::1]:9090",
		"0000000000000000FFFF00000100007F:0050": "127.0.0.1:80",
	} {
		got, err := procAddr(in)
		if err != nil || got.String() != want {
			t.Errorf("procAddr(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "0100007F", "zz00007F:2382", "0100007F:fffff", "01007F:2382"} {
		if _, err := procAddr(bad); err == nil {
			t.Errorf("procAddr(%q) accepted", bad)
		}
	}
}

// procAddr never panics, and what it accepts is an address and port that
// print back as a host:port.
func FuzzProcAddr(f *testing.F) {
	for _, s := range []string{"0100007F:2382", "00000000000000000000000001000000:2382", "", ":", "0:0", "0100007F:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ap, err := procAddr(s)
		if err != nil {
			return
		}
		if _, _, err := net.SplitHostPort(ap.String()); err != nil || !ap.Addr().IsValid() {
			t.Fatalf("procAddr(%q) = %v", s, ap)
		}
	})
}
