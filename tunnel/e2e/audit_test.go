package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

// TestClusterAudit runs the built `tunnel audit` in the "aks" namespace
// against its running gateway: every TCP port and the UDP ports that
// matter of eks's tunnel address, and the second address aks routes to
// eks, answer nothing beyond the forward rules. Once eks exposes one port
// more (a reload), the audit exits 1 naming it.
func TestClusterAudit(t *testing.T) {
	c := startClusters(t)
	audit := func(args ...string) (int, string) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", c.aks, bin(t, "tunnel"), "audit",
			"--admin", "http://" + c.aksGWAdmin, "--address", "10.99.0.3", "--timeout", "500ms", "--concurrency", "1024"}, args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		} else if err != nil {
			t.Fatal(err)
		}
		return 0, string(out)
	}
	code, out := audit()
	t.Logf("audit:\n%s", out)
	if code != 0 || !strings.Contains(out, "OK: nothing answers beyond") {
		t.Fatalf("audit of the deployed scope: exit %d\n%s", code, out)
	}

	// eks exposes relay's API on a port aks has no rule for.
	path := filepath.Join(c.dir, "eks.yaml")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	widened := strings.Replace(string(b), "expose:\n", "expose:\n  - {name: api, protocol: tcp, port: 9000, target: \""+relayPod+":8080\", peers: [aks]}\n", 1)
	writeFile(t, path, widened)
	if err := c.eksGW.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testutil.EventuallyEvery(t, 20*time.Second, 200*time.Millisecond, "eks to serve the reloaded rule", func() bool {
		return strings.Contains(gatewayStatusJSON(c, c.eks), `"name":"api"`)
	})
	code, out = audit("--tcp-ports", "1-1024,7000-10000")
	if code != 1 || !strings.Contains(out, "tcp/10.99.0.1:9000") || !strings.Contains(out, "UNEXPECTED") {
		t.Fatalf("audit after eks exposed tcp/9000: exit %d\n%s", code, out)
	}
}

// gatewayStatusJSON is a gateway's /status inside its namespace.
func gatewayStatusJSON(c *clusters, ns string) string {
	out, _ := exec.Command("ip", "netns", "exec", ns, bin(c.t, "tunnel"), "status", "--admin", "http://127.0.0.1:9090", "--json").CombinedOutput()
	return strings.Join(strings.Fields(string(out)), "")
}
