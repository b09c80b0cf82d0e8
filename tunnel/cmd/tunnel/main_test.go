package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/metricstest"
	"github.com/tunnel-dev/tunnel/keys"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	path := filepath.Join(dir, "gateway.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func gatewayConfig(t *testing.T, dir string) (path string, pub keys.PublicKey) {
	t.Helper()
	pub, err := keys.WriteKeyPair(filepath.Join(dir, "keys"), false)
	if err != nil {
		t.Fatal(err)
	}
	peer, _ := keys.GeneratePrivateKey()
	return writeConfig(t, dir, fmt.Sprintf(`
interface:
  name: clitest
  privateKeyFile: %s
  addresses: [10.99.0.1]
  uapiDir: %s
peers:
  - name: bunny
    publicKey: %s
    allowedIPs: [10.99.0.2/32]
expose:
  - {name: relay, protocol: udp, port: 7000, target: "127.0.0.1:7000", peers: [bunny]}
admin: {listen: "127.0.0.1:0"}
`, filepath.Join(dir, "keys", keys.PrivateKeyFile), filepath.Join(dir, "run"), peer.Public())), pub
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	path, pub := gatewayConfig(t, dir)
	code, out, errOut := runCLI(t, "config", "check", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"valid", "peer bunny (key …", "may reach udp/7000 → 127.0.0.1:7000", "nothing else answers", pub.Fingerprint()} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	bad := writeConfig(t, t.TempDir(), "interface: {addresses: [10.99.0.1], privateKeyFile: x}\npeers: [{name: a, publicKey: nope, allowedIPs: [10.0.0.2/32]}]\n")
	code, _, errOut = runCLI(t, "config", "check", bad)
	if code != 2 || !strings.Contains(errOut, "peers[0].publicKey") || !strings.Contains(errOut, ":2:") {
		t.Fatalf("bad config: exit %d, %s", code, errOut)
	}
	// The key file must exist and be private, unless --offline.
	if err := os.Chmod(filepath.Join(dir, "keys", keys.PrivateKeyFile), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut = runCLI(t, "config", "check", path); code != 2 || !strings.Contains(errOut, "chmod 600") || !strings.Contains(errOut, path+":4: interface.privateKeyFile: ") {
		t.Fatalf("world-readable key: exit %d, %s", code, errOut)
	}
	if code, _, errOut = runCLI(t, "config", "check", "--offline", path); code != 0 {
		t.Fatalf("--offline: exit %d, %s", code, errOut)
	}
	// A value marked REPLACE passes only --offline --allow-placeholders.
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := writeConfig(t, t.TempDir(), strings.Replace(string(text), "allowedIPs:", "endpoint: gw-REPLACE.example.com:51820\n    allowedIPs:", 1))
	for _, args := range [][]string{{tmpl}, {"--offline", tmpl}} {
		if code, _, errOut = runCLI(t, append([]string{"config", "check"}, args...)...); code != 2 || !strings.Contains(errOut, "peers[0].endpoint") || !strings.Contains(errOut, "is a placeholder") {
			t.Fatalf("check %v: exit %d, %s", args, code, errOut)
		}
	}
	if code, _, errOut = runCLI(t, "config", "check", "--allow-placeholders", tmpl); code != 2 || !strings.Contains(errOut, "needs --offline") {
		t.Fatalf("--allow-placeholders alone: exit %d, %s", code, errOut)
	}
	if code, out, errOut := runCLI(t, "config", "check", "--offline", "--allow-placeholders", tmpl); code != 0 || !strings.Contains(out, "valid") {
		t.Fatalf("--offline --allow-placeholders: exit %d, %s", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	if code, _, _ := runCLI(t, "--help"); code != 0 {
		t.Errorf("--help exit %d", code)
	}
	if code, _, errOut := runCLI(t, "gateway"); code != 2 || !strings.Contains(errOut, "--config") {
		t.Errorf("missing --config: exit %d, %s", code, errOut)
	}
	if code, _, _ := runCLI(t, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d", code)
	}
	if code, _, errOut := runCLI(t, "gateway", "-c", filepath.Join(t.TempDir(), "none.yaml")); code != 2 || !strings.Contains(errOut, "none.yaml") {
		t.Errorf("missing file: exit %d, %s", code, errOut)
	}
	// Flags from the environment.
	t.Setenv("TUNNEL_CONFIG", filepath.Join(t.TempDir(), "from-env.yaml"))
	if code, _, errOut := runCLI(t, "gateway"); code != 2 || !strings.Contains(errOut, "from-env.yaml") {
		t.Errorf("TUNNEL_CONFIG: exit %d, %s", code, errOut)
	}
}

func TestKeysCommands(t *testing.T) {
	dir := t.TempDir()
	code, pub, errOut := runCLI(t, "keys", "generate", "--out-dir", dir)
	if code != 0 {
		t.Fatalf("generate: %d %s", code, errOut)
	}
	if code, got, _ := runCLI(t, "keys", "public", filepath.Join(dir, keys.PrivateKeyFile)); code != 0 || got != pub {
		t.Fatalf("public = %q, want %q", got, pub)
	}
	if code, _, errOut := runCLI(t, "keys", "generate", "--out-dir", dir); code == 0 || !strings.Contains(errOut, "--force") {
		t.Fatalf("overwrote: %d %s", code, errOut)
	}
	code, pin, errOut := runCLI(t, "keys", "identity", "--name", "bunny", "--out-dir", dir)
	if code != 0 || !strings.HasPrefix(pin, "sha256/") {
		t.Fatalf("identity: %d %q %s", code, pin, errOut)
	}
	if code, got, _ := runCLI(t, "keys", "pin", filepath.Join(dir, keys.IdentityCertFile)); code != 0 || got != pin {
		t.Fatalf("pin = %q, want %q", got, pin)
	}
	b, _ := os.ReadFile(filepath.Join(dir, keys.PrivateKeyFile))
	if strings.Contains(pub, strings.TrimSpace(string(b))) {
		t.Fatal("generate printed the private key")
	}
}

// TestGatewayProcess runs the real binary, stamped as make build stamps
// it: it reports its version, starts, reports ready, shows in `tunnel
// status`, and exits 0 on SIGTERM.
func TestGatewayProcess(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "tunnel")
	build := exec.Command("go", "build", "-ldflags", buildinfo.LDFlags("v9.9.9-test", "feedface"), "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	goVersion := runtime.Version()
	if out, err := exec.Command(bin, "--version").Output(); err != nil || string(out) != "tunnel v9.9.9-test (revision feedface, "+goVersion+")\n" {
		t.Fatalf("--version: %q %v", out, err)
	}
	dir := t.TempDir()
	path, pub := gatewayConfig(t, dir)
	// Pick the admin port here so the test knows it.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	adminAddr := l.Addr().String()
	l.Close()
	body, _ := os.ReadFile(path)
	_ = os.WriteFile(path, bytes.Replace(body, []byte("127.0.0.1:0"), []byte(adminAddr), 1), 0o644)

	var logs bytes.Buffer
	cmd := exec.Command(bin, "gateway", "--config", path, "--log-format", "json")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready: %v\n%s", err, logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// One flag finds the gateway: its config file or its admin URL. This
	// side only dials, and status says so.
	for _, args := range [][]string{{"status", "--config", path}, {"status", "--admin", "http://" + adminAddr}} {
		code, out, errOut := runCLI(t, args...)
		if code != 0 || !strings.Contains(out, "gateway clitest  key "+pub.Fingerprint()) || !strings.Contains(out, "bunny") || !strings.Contains(out, "relay") ||
			!strings.Contains(out, "WireGuard dials its peer (no endpoint yet), listening on no port") || strings.Contains(out, "listening on udp") {
			t.Errorf("%v: exit %d\n%s\n%s", args, code, out, errOut)
		}
	}
	// A name that is not the admin endpoint's gateway is refused, not
	// paired with it.
	code, _, errOut := runCLI(t, "status", "--name", "clitest-none", "--admin", "http://"+adminAddr)
	if want := `the admin endpoint http://` + adminAddr + ` (--admin) is gateway "clitest", not "clitest-none"`; code != 2 || !strings.Contains(errOut, want) {
		t.Errorf("mismatched --name: exit %d, %s; want %q", code, errOut, want)
	}
	checkDiscovery(t, bin, dir, adminAddr)
	// Right after start, before any traffic, every series is there.
	m := metricstest.Get(t, "http://"+adminAddr+"/metrics")
	m.Require(t,
		`tunnel_build_info{goversion="`+goVersion+`",revision="feedface",version="v9.9.9-test"}=1`,
		`tunnel_gateway_up{name="clitest"}=1`,
		`tunnel_peer_last_handshake_timestamp_seconds{peer="bunny"}=0`,
		`tunnel_peer_receive_bytes_total{peer="bunny"}=0`,
		`tunnel_rule_active_flows{kind="expose",protocol="udp",rule="relay"}=0`,
		`tunnel_rule_flows_total{kind="expose",protocol="udp",rule="relay"}=0`,
		`tunnel_rule_bytes_total{direction="up",kind="expose",protocol="udp",rule="relay"}=0`,
		`tunnel_rule_denied_packets_total{kind="expose",protocol="udp",rule="relay"}=0`,
		`tunnel_ingress_dropped_packets_total{reason="not_exposed"}=0`,
		`tunnel_wireguard_refused_packets_total{reason="handshake_refused"}=0`,
		`tunnel_netstack_queue_dropped_packets_total=0`,
		`tunnel_netstack_queued_bytes=0`,
		`tunnel_netstack_budget_resets_total{direction="out"}=0`,
		`tunnel_netstack_budget_resets_total{direction="in"}=0`,
		"go_goroutines",
	)
	m.RequireFamilies(t, metricstest.Documented(t, "../../../docs/gateway.md", "tunnel_")...)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-ctx.Done():
		t.Fatalf("did not exit after SIGTERM\n%s", logs.String())
	}
	key, _ := os.ReadFile(filepath.Join(dir, "keys", keys.PrivateKeyFile))
	if bytes.Contains(logs.Bytes(), bytes.TrimSpace(key)) {
		t.Fatal("the private key appeared in the logs")
	}
	if _, err := os.Stat(filepath.Join(dir, "run", "clitest.sock")); !os.IsNotExist(err) {
		t.Errorf("UAPI socket left behind: %v", err)
	}
}
