package tunnel_test

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

// uapiPair starts a pair whose aks side has its UAPI socket in dir.
func uapiGateway(t *testing.T, dir, name string) *pair {
	t.Helper()
	p := &pair{eksKey: testutil.PrivateKey(t), aksKey: testutil.PrivateKey(t)}
	c := mustParse(t, fmt.Sprintf(`
interface: {name: %s, privateKeyFile: unused, addresses: [10.99.0.2], uapiDir: %q}
peers: [{name: eks, publicKey: %s, allowedIPs: [10.99.0.1/32]}]
admin: {listen: "-"}
`, name, dir, p.eksKey.Public()))
	p.aks = startGateway(t, c, p.aksKey)
	eks := mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
admin: {listen: "-"}
`, p.aksKey.Public(), p.aks.ListenPort()))
	p.eks = startGateway(t, eks, p.eksKey)
	return p
}

func uapiRequest(t *testing.T, path, req string) string {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		b.WriteString(sc.Text() + "\n")
		if strings.HasPrefix(sc.Text(), "errno=") {
			break
		}
	}
	return b.String()
}

func TestUAPISocketReadOnly(t *testing.T) {
	dir := t.TempDir()
	p := uapiGateway(t, dir, "uapitest")
	path := filepath.Join(dir, "uapitest.sock")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	testutil.Eventually(t, 10*time.Second, "a handshake with eks", func() bool {
		return strings.Contains(uapiRequest(t, path, "get=1\n\n"), "last_handshake_time_sec=1")
	})
	got := uapiRequest(t, path, "get=1\n\n")
	if !strings.Contains(got, "public_key="+p.eksKey.Public().UAPIHex()) || !strings.HasSuffix(got, "errno=0\n") {
		t.Fatalf("get = %q", got)
	}
	// A change through the socket is refused and changes nothing.
	stranger := testutil.PrivateKey(t)
	resp := uapiRequest(t, path, "set=1\npublic_key="+stranger.Public().UAPIHex()+"\nallowed_ip=10.99.0.9/32\n\n")
	if !strings.Contains(resp, "errno=1") {
		t.Fatalf("set answered %q, want errno=1", resp)
	}
	if strings.Contains(uapiRequest(t, path, "get=1\n\n"), stranger.Public().UAPIHex()) {
		t.Fatal("the refused set added a peer")
	}
	// A second gateway with the same name cannot take the live socket.
	if _, err := os.Stat(path); err != nil {
		t.Fatal(err)
	}
}

// TestWgctrlSeesGateway needs the standard socket directory, where wgctrl
// and `wg` look; only root can write there.
func TestWgctrlSeesGateway(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: wgctrl only looks in /var/run/wireguard")
	}
	name := fmt.Sprintf("tt%d", os.Getpid()%100000)
	p := uapiGateway(t, "/var/run/wireguard", name)
	client, err := wgctrl.New()
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	testutil.Eventually(t, 10*time.Second, "wgctrl reports a handshake", func() bool {
		d, err := client.Device(name)
		return err == nil && len(d.Peers) == 1 && !d.Peers[0].LastHandshakeTime.IsZero()
	})
	d, _ := client.Device(name)
	if d.PublicKey.String() != p.aksKey.Public().String() || d.Peers[0].PublicKey.String() != p.eksKey.Public().String() {
		t.Fatalf("wgctrl device = %+v", d)
	}
}
