package tunneltest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/rotate"
)

// Rotating one AKS replica's key against two EKS replicas (each with a
// store of its own holding aks's key): the new key is staged at both
// before aks switches, both pairs carry traffic throughout (a datagram
// every 5 ms through each), and both end accepting only the new key.
// With one --peer-store the pair with the other replica went down.
func TestRotateAgainstTwoPeers(t *testing.T) {
	root := t.TempDir()
	aksKey, aKey, bKey := testutil.PrivateKey(t), testutil.PrivateKey(t), testutil.PrivateKey(t)
	echo := UDPEcho(t)
	aks := &Side{Name: "aks", KeyDir: filepath.Join(root, "aks-keys"), Config: filepath.Join(root, "aks.yaml"), Logs: &testutil.Buffer{}}
	eksA := &Side{Name: "eks-a", KeyDir: filepath.Join(root, "eks-a-keys"), Config: filepath.Join(root, "eks-a.yaml"), Logs: &testutil.Buffer{}}
	eksB := &Side{Name: "eks-b", KeyDir: filepath.Join(root, "eks-b-keys"), Config: filepath.Join(root, "eks-b.yaml"), Logs: &testutil.Buffer{}}
	kubeletLayout(t, "aks", aks.KeyDir, map[string][]byte{
		keys.PrivateKeyFile:       []byte(aksKey.Base64() + "\n"),
		keys.PeerKeyFile("eks-a"): keys.FormatPeerKeys(aKey.Public()),
		keys.PeerKeyFile("eks-b"): keys.FormatPeerKeys(bKey.Public()),
	})
	for _, s := range []struct {
		side *Side
		key  keys.PrivateKey
	}{{eksA, aKey}, {eksB, bKey}} {
		kubeletLayout(t, "eks", s.side.KeyDir, map[string][]byte{
			keys.PrivateKeyFile:     []byte(s.key.Base64() + "\n"),
			keys.PeerKeyFile("aks"): keys.FormatPeerKeys(aksKey.Public()),
		})
	}
	aks.body = fmt.Sprintf(`
interface: {name: aks, privateKeyFile: %s, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers:
  - {name: eks-a, publicKeyFile: %s, persistentKeepalive: 1s, allowedIPs: [10.99.0.1/32]}
  - {name: eks-b, publicKeyFile: %s, persistentKeepalive: 1s, allowedIPs: [10.99.0.11/32]}
forward:
  - {name: via-a, protocol: udp, listen: "127.0.0.1:0", peer: eks-a, to: "10.99.0.1:7000"}
  - {name: via-b, protocol: udp, listen: "127.0.0.1:0", peer: eks-b, to: "10.99.0.11:7000"}
admin: {listen: "127.0.0.1:0"}
`, filepath.Join(aks.KeyDir, keys.PrivateKeyFile), FreeUDPPort(t), filepath.Join(aks.KeyDir, keys.PeerKeyFile("eks-a")), filepath.Join(aks.KeyDir, keys.PeerKeyFile("eks-b")))
	every := 50 * time.Millisecond
	aks.start(t, every)
	for _, s := range []struct {
		side *Side
		addr string
	}{{eksA, "10.99.0.1"}, {eksB, "10.99.0.11"}} {
		s.side.body = fmt.Sprintf(`
interface: {name: %s, privateKeyFile: %s, addresses: [%s], uapiDir: "-"}
peers: [{name: aks, publicKeyFile: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
expose: [{name: relay, protocol: udp, port: 7000, target: %q, peers: [aks]}]
admin: {listen: "127.0.0.1:0"}
`, s.side.Name, filepath.Join(s.side.KeyDir, keys.PrivateKeyFile), s.addr, filepath.Join(s.side.KeyDir, keys.PeerKeyFile("aks")), aks.Gateway.ListenPort(), echo)
		s.side.start(t, every)
	}
	forward := func(rule string) string {
		ap, ok := aks.Gateway.ForwardAddr(rule)
		if !ok {
			t.Fatalf("aks has no forward rule %s", rule)
		}
		return net.JoinHostPort(ap.Addr().String(), fmt.Sprint(ap.Port()))
	}
	pings := []*pinger.Pinger{pinger.Start(t, forward("via-a"), 5*time.Millisecond), pinger.Start(t, forward("via-b"), 5*time.Millisecond)}
	for i, p := range pings {
		p.Flowing(t, 15*time.Second, 20, fmt.Sprintf("through eks-%c before rotating", 'a'+i))
		p.ResetGap()
	}

	before := aks.PublicKey()
	var out bytes.Buffer
	rot := &rotate.Rotation{
		This:    rotate.Side{Store: aks.Store(), Status: httpStatus(t, aks.AdminURL())},
		Peer:    rotate.Side{Store: eksA.Store(), Status: httpStatus(t, eksA.AdminURL())},
		Peers:   []rotate.Side{{Store: eksB.Store(), Status: httpStatus(t, eksB.AdminURL())}},
		Timeout: 20 * time.Second,
		Poll:    50 * time.Millisecond,
		Out:     &out,
	}
	res, err := rot.Run(context.Background())
	if err != nil {
		t.Fatalf("rotating aks against two peers: %v\n%s", err, out.String())
	}
	t.Logf("rotating aks:\n%s", out.String())
	if want := []rotate.Step{rotate.Prepare, rotate.Stage, rotate.Switch, rotate.Revoke}; !slices.Equal(res.Steps, want) {
		t.Fatalf("steps %v, want %v", res.Steps, want)
	}
	if res.Key == before || res.State != rotate.Settled {
		t.Fatalf("result %+v", res)
	}
	for _, o := range []*Side{eksA, eksB} {
		CheckSettled(t, aks, o, res.Key)
	}
	var gaps []time.Duration
	for i, p := range pings {
		p.Flowing(t, 10*time.Second, 20, fmt.Sprintf("through eks-%c after rotating", 'a'+i))
		gaps = append(gaps, p.Gap())
	}
	for _, p := range pings {
		p.Halt()
	}
	t.Logf("longest silence with a datagram every 5 ms: through eks-a %v, through eks-b %v", gaps[0], gaps[1])
	for i, g := range gaps {
		if g > 3*time.Second {
			t.Errorf("the pair with eks-%c stopped for %v", 'a'+i, g)
		}
	}
}
