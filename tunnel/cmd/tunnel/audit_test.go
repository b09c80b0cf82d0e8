package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/echo"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// tunnel audit against a running gateway's admin endpoint: passes while
// the peer exposes only what the forward rule reaches, fails naming the
// port once the peer opens one more.
func TestAuditCommand(t *testing.T) {
	eksKey, aksKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go echo.TCP(ln)
	t.Cleanup(func() { ln.Close() })
	aks := startTestGateway(t, aksKey, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, listenPort: 0, addresses: [10.99.0.2], uapiDir: "-"}
peers:
  - {name: eks, publicKey: %s, allowedIPs: [10.99.0.1/32]}
forward:
  - {name: svc, protocol: tcp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:8000"}
admin: {listen: "127.0.0.1:0"}
`, eksKey.Public()))
	eks := startTestGateway(t, eksKey, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 25s, allowedIPs: [10.99.0.2/32]}
expose:
  - {name: svc, protocol: tcp, port: 8000, target: "%s", peers: [aks]}
admin: {listen: "-"}
`, aksKey.Public(), aks.ListenPort(), ln.Addr()))

	args := []string{"audit", "--admin", aks.AdminURL(), "--tcp-ports", "1-1024,7990-8010", "--timeout", "500ms"}
	code, out, errOut := runCLI(t, args...)
	if code != 0 || !strings.Contains(out, "tcp/10.99.0.1:8000  open") || !strings.Contains(out, "OK: nothing answers beyond 1 expected") {
		t.Fatalf("audit of a peer exposing only the rule's port: exit %d\n%s%s", code, out, errOut)
	}

	extra, err := eks.Listen("tcp", ":8005")
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	code, out, errOut = runCLI(t, args...)
	if code != 1 || !strings.Contains(errOut, "answers beyond this gateway's rules: tcp/10.99.0.1:8005 open") || !strings.Contains(out, "UNEXPECTED") {
		t.Fatalf("audit of a peer exposing one port more: exit %d\n%s%s", code, out, errOut)
	}
	// Allowed by --expect, it passes again.
	code, out, errOut = runCLI(t, append(args, "--expect", "tcp/10.99.0.1:8005")...)
	if code != 0 {
		t.Fatalf("audit with --expect for the extra port: exit %d\n%s%s", code, out, errOut)
	}
}

func TestAuditCommandBadFlags(t *testing.T) {
	for _, tt := range []struct{ args, want string }{
		{"--tcp-ports 0", "--tcp-ports"},
		{"--udp 70000", "--udp"},
		{"--expect tcp/nowhere", "--expect"},
		{"--target example", "--target"},
		{"--concurrency 0", "--concurrency"},
	} {
		code, _, errOut := runCLI(t, append([]string{"audit", "--admin", "http://127.0.0.1:1"}, strings.Fields(tt.args)...)...)
		if code != 2 || !strings.Contains(errOut, tt.want) {
			t.Errorf("audit %s: exit %d, %s; want 2 naming %s", tt.args, code, errOut, tt.want)
		}
	}
}

func startTestGateway(t *testing.T, key keys.PrivateKey, yaml string) *tunnel.Gateway {
	t.Helper()
	c, err := config.Parse([]byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	gw := &tunnel.Gateway{PrivateKey: &key}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Start(ctx, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw
}
