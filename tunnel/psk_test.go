package tunnel_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
)

func writePSK(t *testing.T) string {
	t.Helper()
	k, err := keys.GeneratePresharedKey()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "psk")
	if err := keys.WriteFile(path, []byte(k.Base64()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pskPair starts two gateways whose peer entries use the given preshared
// key files, and reports whether a connection gets through.
func pskConnects(t *testing.T, aksPSK, eksPSK string) bool {
	t.Helper()
	eksKey, aksKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	echo := tcpEchoServer(t)
	aks := startGateway(t, mustParse(t, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers: [{name: eks, publicKey: %s, presharedKeyFile: %q, allowedIPs: [10.99.0.1/32]}]
admin: {listen: "-"}
`, freeUDPPort(t), eksKey.Public(), aksPSK)), aksKey)
	startGateway(t, mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKey: %s, presharedKeyFile: %q, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
expose: [{name: e, protocol: tcp, port: 8000, target: %q, peers: [aks]}]
admin: {listen: "-"}
`, aksKey.Public(), eksPSK, aks.ListenPort(), echo)), eksKey)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := aks.Dial(ctx, "tcp", "10.99.0.1:8000")
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func TestPresharedKey(t *testing.T) {
	psk := writePSK(t)
	if !pskConnects(t, psk, psk) {
		t.Fatal("the same preshared key on both sides did not connect")
	}
	if pskConnects(t, psk, writePSK(t)) {
		t.Fatal("different preshared keys connected")
	}
}

func TestPresharedKeyFileMustBePrivate(t *testing.T) {
	psk := writePSK(t)
	if err := os.Chmod(psk, 0o644); err != nil {
		t.Fatal(err)
	}
	k := testutil.PrivateKey(t)
	gw := mustParse(t, fmt.Sprintf(`
interface: {name: x, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKey: %s, presharedKeyFile: %q, allowedIPs: [10.99.0.2/32]}]
admin: {listen: "-"}
`, testutil.PrivateKey(t).Public(), psk))
	err := (&tunnelGateway{cfg: gw, key: k}).start(t)
	if err == nil {
		t.Fatal("started with a world-readable preshared key")
	}
}
