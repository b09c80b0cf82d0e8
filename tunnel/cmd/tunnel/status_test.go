package main

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

func TestAdminURL(t *testing.T) {
	for listen, want := range map[string]string{
		"127.0.0.1:9090": "http://127.0.0.1:9090",
		"0.0.0.0:9090":   "http://127.0.0.1:9090",
		"[::]:9090":      "http://[::1]:9090",
		":9090":          "http://127.0.0.1:9090",
		"10.0.0.5:9091":  "http://10.0.0.5:9091",
	} {
		if got := adminURL(listen); got != want {
			t.Errorf("adminURL(%q) = %q, want %q", listen, got, want)
		}
	}
}

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
	got, err := (&statusCmd{Config: path}).target()
	if want := (statusTarget{admin: "http://127.0.0.1:0", name: "clitest", uapiDir: filepath.Join(dir, "run")}); err != nil || got != want {
		t.Errorf("--config: %+v %v, want %+v", got, err, want)
	}
	got, err = (&statusCmd{}).target()
	if want := (statusTarget{admin: "http://" + config.DefaultAdminListen, uapiDir: config.DefaultUAPIDir}); err != nil || got != want {
		t.Errorf("no flags: %+v %v, want %+v", got, err, want)
	}
	if _, err := (&statusCmd{Config: filepath.Join(dir, "none.yaml")}).target(); err == nil {
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
