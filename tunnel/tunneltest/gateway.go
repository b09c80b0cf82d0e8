package tunneltest

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/echo"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/store"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// Side is one gateway, configured from its key store directory.
type Side struct {
	Name    string
	KeyDir  string // the key store: private.key, peer.<peer>.pub
	Config  string // the gateway's config file
	Gateway *tunnel.Gateway
	Logs    *testutil.Buffer // the gateway's and its watcher's logs

	body string
}

// Store is the side's key store.
func (s *Side) Store() *store.Dir { return store.NewDir(s.KeyDir) }

// AdminURL is the gateway's admin server, whose /status rotate reads.
func (s *Side) AdminURL() string { return s.Gateway.AdminURL() }

// Pair is two gateways with a UDP echo behind eks, reachable through aks's
// forward rule "relay".
type Pair struct {
	AKS, EKS *Side
	Echo     string
}

// Options shape a pair.
type Options struct {
	// AdminHost is the address the admin servers listen on; default
	// 127.0.0.1. The pod-proxy test needs one the API server may proxy to.
	AdminHost string
	// Every is how often the watchers check the files; default 50ms.
	Every time.Duration
	// Layout publishes a side's initial items into its key directory; nil
	// writes them with store.Dir into a plain directory. Kubelet layouts
	// come from a kubelet.Volume's Publish.
	Layout func(t testing.TB, side, dir string, items map[string][]byte)
}

// StartPair starts aks (listening) and eks (dialling) with fresh keys, each
// reading its key store directory and watching it.
func StartPair(t testing.TB, o Options) *Pair {
	t.Helper()
	if o.AdminHost == "" {
		o.AdminHost = "127.0.0.1"
	}
	if o.Every <= 0 {
		o.Every = 50 * time.Millisecond
	}
	root := t.TempDir()
	aksKey, eksKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	p := &Pair{
		AKS:  &Side{Name: "aks", KeyDir: filepath.Join(root, "aks-keys"), Config: filepath.Join(root, "aks.yaml"), Logs: &testutil.Buffer{}},
		EKS:  &Side{Name: "eks", KeyDir: filepath.Join(root, "eks-keys"), Config: filepath.Join(root, "eks.yaml"), Logs: &testutil.Buffer{}},
		Echo: UDPEcho(t),
	}
	publish := o.Layout
	if publish == nil {
		publish = func(t testing.TB, _, dir string, items map[string][]byte) {
			t.Helper()
			if _, err := store.NewDir(dir).Write(context.Background(), "", store.Change{Set: items}); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(t, "aks", p.AKS.KeyDir, map[string][]byte{
		keys.PrivateKeyFile:     []byte(aksKey.Base64() + "\n"),
		keys.PeerKeyFile("eks"): keys.FormatPeerKeys(eksKey.Public()),
	})
	publish(t, "eks", p.EKS.KeyDir, map[string][]byte{
		keys.PrivateKeyFile:     []byte(eksKey.Base64() + "\n"),
		keys.PeerKeyFile("aks"): keys.FormatPeerKeys(aksKey.Public()),
	})
	p.AKS.body = fmt.Sprintf(`
interface: {name: aks, privateKeyFile: %s, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers: [{name: eks, publicKeyFile: %s, allowedIPs: [10.99.0.1/32]}]
forward: [{name: relay, protocol: udp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:7000"}]
admin: {listen: "%s"}
`, filepath.Join(p.AKS.KeyDir, keys.PrivateKeyFile), FreeUDPPort(t), filepath.Join(p.AKS.KeyDir, keys.PeerKeyFile("eks")), net.JoinHostPort(o.AdminHost, "0"))
	p.AKS.start(t, o.Every)
	p.EKS.body = fmt.Sprintf(`
interface: {name: eks, privateKeyFile: %s, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKeyFile: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
expose: [{name: relay, protocol: udp, port: 7000, target: %q, peers: [aks]}]
admin: {listen: "%s"}
`, filepath.Join(p.EKS.KeyDir, keys.PrivateKeyFile), filepath.Join(p.EKS.KeyDir, keys.PeerKeyFile("aks")), p.AKS.Gateway.ListenPort(), p.Echo, net.JoinHostPort(o.AdminHost, "0"))
	p.EKS.start(t, o.Every)
	return p
}

func (s *Side) start(t testing.TB, every time.Duration) {
	t.Helper()
	if err := os.WriteFile(s.Config, []byte(s.body), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(s.Config)
	if err != nil {
		t.Fatalf("%s config: %v", s.Name, err)
	}
	log := slog.New(slog.NewTextHandler(s.Logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("side", s.Name)
	s.Gateway = &tunnel.Gateway{Logger: log}
	if err := s.Gateway.Start(context.Background(), c); err != nil {
		t.Fatalf("starting %s: %v", s.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &tunnel.Watcher{Gateway: s.Gateway, Path: s.Config, Every: every, Logger: log}
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		s.Gateway.Close()
		if t.Failed() {
			t.Logf("%s logs:\n%s", s.Name, s.Logs.String())
		}
	})
}

// PublicKey is the key the side's gateway runs now.
func (s *Side) PublicKey() keys.PublicKey { return s.Gateway.PublicKey() }

// Forward is aks's local forward address, through the tunnel to the echo.
func (p *Pair) Forward(t testing.TB) string {
	t.Helper()
	ap, ok := p.AKS.Gateway.ForwardAddr("relay")
	if !ok {
		t.Fatal("aks has no forward rule relay")
	}
	return ap.String()
}

// Stranger starts a gateway that holds key and dials aks as eks would:
// it shows whether aks still accepts an old key of eks's.
func (p *Pair) Stranger(t testing.TB, key keys.PrivateKey) *tunnel.Gateway {
	t.Helper()
	c, err := config.Parse(fmt.Appendf(nil, `
interface: {name: stranger, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
admin: {listen: "-"}
`, p.AKS.PublicKey(), p.AKS.Gateway.ListenPort()))
	if err != nil {
		t.Fatal(err)
	}
	g := &tunnel.Gateway{PrivateKey: &key}
	if err := g.Start(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g
}

// UDPEcho echoes each datagram to its sender until the test ends.
func UDPEcho(t testing.TB) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() { defer close(done); echo.UDP(pc) }()
	return pc.LocalAddr().String()
}

// FreeUDPPort is a UDP port nothing used a moment ago.
func FreeUDPPort(t testing.TB) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	return pc.LocalAddr().(*net.UDPAddr).Port
}
