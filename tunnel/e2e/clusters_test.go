package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/netns"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/producers"
)

// clusters is two "clusters" on one machine: a namespace per cloud joined
// by a veth pair whose firewall lets only WireGuard's UDP cross. In "eks",
// relay listens on a pod address that nothing outside the namespace can
// reach, and the EKS gateway exposes relay's QUIC port to the AKS gateway's
// key and dials out. In "aks", the AKS gateway listens for WireGuard and
// forwards 127.0.0.1:7443 to relay's port through the tunnel.
type clusters struct {
	t        *testing.T
	dir      string
	eks, aks string // namespace names

	relayDB    string
	relayArgs  []string
	relay      *netns.Proc
	eksGW      *netns.Proc
	aksGW      *netns.Proc
	bunny      *netns.Proc
	eksGWArgs  []string
	aksGWArgs  []string
	relayPin   keys.Pin
	bunnyCert  string
	bunnyKey   string
	relayCert  string
	apiClient  *api.Client
	eksGWAdmin string
	aksGWAdmin string

	// producers is relay's producers file; token that of producer e2e.
	producers string
	token     string
}

const (
	eksVeth  = "192.168.77.1"
	aksVeth  = "192.168.77.2"
	relayPod = "10.200.0.10" // relay's "pod address" inside eks
	wgPort   = "51820"
)

// relayAdmin is relay's /readyz and /metrics, on eks's loopback.
const relayAdmin = "127.0.0.1:9091"

func startClusters(t *testing.T) *clusters {
	t.Helper()
	c := newClusters(t)
	c.firewall(wgPort)

	// Keys: each gateway's pair.
	eksPub, err := keys.WriteKeyPair(filepath.Join(c.dir, "eks-keys"), false)
	if err != nil {
		t.Fatal(err)
	}
	aksPub, err := keys.WriteKeyPair(filepath.Join(c.dir, "aks-keys"), false)
	if err != nil {
		t.Fatal(err)
	}
	// Each gateway reads its peer's key from its own store, as on
	// Kubernetes, so that `tunnel keys rotate` can replace either.
	writeFile(t, filepath.Join(c.dir, "eks-keys", keys.PeerKeyFile("aks")), string(keys.FormatPeerKeys(aksPub)))
	writeFile(t, filepath.Join(c.dir, "aks-keys", keys.PeerKeyFile("eks")), string(keys.FormatPeerKeys(eksPub)))
	c.setupRelay()

	// The gateways.
	c.eksGWAdmin, c.aksGWAdmin = "127.0.0.1:9090", "127.0.0.1:9090"
	writeFile(t, filepath.Join(c.dir, "eks.yaml"), fmt.Sprintf(`
interface: {name: %s, privateKeyFile: %s, addresses: [10.99.0.1]}
peers:
  - {name: aks, publicKeyFile: %s, endpoint: "%s:%s", persistentKeepalive: 5s, allowedIPs: [10.99.0.2/32]}
expose:
  - {name: relay, protocol: udp, port: 7443, target: "%s:7443", peers: [aks]}
admin: {listen: "%s"}
`, netns.Name("teks"), filepath.Join(c.dir, "eks-keys", keys.PrivateKeyFile), filepath.Join(c.dir, "eks-keys", keys.PeerKeyFile("aks")), aksVeth, wgPort, relayPod, c.eksGWAdmin))
	writeFile(t, filepath.Join(c.dir, "aks.yaml"), fmt.Sprintf(`
interface: {name: %s, privateKeyFile: %s, listenPort: %s, addresses: [10.99.0.2]}
peers:
  - {name: eks, publicKeyFile: %s, allowedIPs: [10.99.0.1/32, 10.99.0.3/32]}
forward:
  - {name: relay, protocol: udp, listen: "127.0.0.1:7443", peer: eks, to: "10.99.0.1:7443"}
  # For the scope checks only: ports and addresses eks does not expose.
  - {name: relay-api, protocol: tcp, listen: "127.0.0.1:8080", peer: eks, to: "10.99.0.1:8080"}
  - {name: other-port, protocol: udp, listen: "127.0.0.1:7444", peer: eks, to: "10.99.0.1:7444"}
  - {name: other-addr, protocol: udp, listen: "127.0.0.1:7445", peer: eks, to: "10.99.0.3:7443"}
limits: {tcpDialTimeout: 3s}
admin: {listen: "%s"}
`, netns.Name("taks"), filepath.Join(c.dir, "aks-keys", keys.PrivateKeyFile), wgPort, filepath.Join(c.dir, "aks-keys", keys.PeerKeyFile("eks")), c.aksGWAdmin))
	c.aksGWArgs = []string{"gateway", "--config", filepath.Join(c.dir, "aks.yaml"), "--log-format", "json"}
	c.eksGWArgs = []string{"gateway", "--config", filepath.Join(c.dir, "eks.yaml"), "--log-format", "json"}
	c.aksGW = c.startIn(c.aks, "aks gateway", bin(t, "tunnel"), c.aksGWArgs...)
	c.eksGW = c.startIn(c.eks, "eks gateway", bin(t, "tunnel"), c.eksGWArgs...)
	c.waitReady(c.aks, c.aksGWAdmin)
	c.waitReady(c.eks, c.eksGWAdmin)
	return c
}

// newClusters makes the two namespaces and the link between them: no
// firewall yet, no keys, nothing running.
func newClusters(t *testing.T) *clusters {
	t.Helper()
	netns.Require(t, "nft")
	c := &clusters{t: t, dir: t.TempDir(), eks: netns.Name("tteks"), aks: netns.Name("ttaks")}
	netns.Create(t, c.eks)
	netns.Create(t, c.aks)
	netns.Veth(t, c.eks, "veth0", eksVeth+"/24", c.aks, "veth0", aksVeth+"/24")
	// relay's pod address, on eks's loopback (kernels without the dummy
	// link type have that). aks even gets a route to it, as if the two
	// VPCs were peered: only the firewall and the tunnel decide what
	// crosses.
	netns.MustRun(t, "ip", "-n", c.eks, "addr", "add", relayPod+"/32", "dev", "lo")
	netns.MustRun(t, "ip", "-n", c.aks, "route", "add", "10.200.0.0/24", "via", eksVeth)
	return c
}

// setupRelay makes relay's and bunny's QUIC identities, relay's workers
// and producers files, starts relay in eks and makes the producer client.
func (c *clusters) setupRelay() {
	t := c.t
	t.Helper()
	var err error
	c.relayPin, err = keys.WriteIdentity(filepath.Join(c.dir, "relay-id"), "relay", false)
	if err != nil {
		t.Fatal(err)
	}
	bunnyPin, err := keys.WriteIdentity(filepath.Join(c.dir, "bunny-id"), "bunny", false)
	if err != nil {
		t.Fatal(err)
	}
	c.relayCert = filepath.Join(c.dir, "relay-id", keys.IdentityCertFile)
	c.bunnyCert = filepath.Join(c.dir, "bunny-id", keys.IdentityCertFile)
	c.bunnyKey = filepath.Join(c.dir, "bunny-id", keys.IdentityKeyFile)
	writeFile(t, filepath.Join(c.dir, "workers.yaml"), fmt.Sprintf(`
workers:
  - name: bunny
    pins: [%s]
    queues:
      e2e: [lease, heartbeat, complete, fail]
`, bunnyPin))

	// relay, in eks, on its pod address, QUIC and the producer API both;
	// its admin endpoints on eks's loopback.
	c.producers = filepath.Join(c.dir, "producers.yaml")
	if c.token, err = producers.NewFile(c.producers, "e2e", "e2e"); err != nil {
		t.Fatal(err)
	}
	c.relayDB = filepath.Join(c.dir, "relay.db")
	c.relayArgs = []string{"serve", "--db", c.relayDB, "--listen", relayPod + ":7443", "--http", relayPod + ":8080",
		"--admin", relayAdmin, "--producers", c.producers, "--producers-check", "100ms",
		"--identity-cert", c.relayCert, "--identity-key", filepath.Join(c.dir, "relay-id", keys.IdentityKeyFile),
		"--workers", filepath.Join(c.dir, "workers.yaml"), "--lease-duration", "10s", "--backoff-base", "200ms", "--backoff-max", "2s",
		"--log-format", "json"}
	c.startRelay()
	c.apiClient = c.producer(c.token)
}

// producer is a client of relay's API, from inside eks, with token.
func (c *clusters) producer(token string) *api.Client {
	return &api.Client{BaseURL: "https://" + relayPod + ":8080", Token: token, HTTP: &http.Client{
		Timeout:   30 * time.Second,
		Transport: &http.Transport{DialContext: dialIn(c.eks), TLSClientConfig: api.ClientTLS(c.relayPin, nil)},
	}}
}

// firewall lets only WireGuard's UDP between the gateways cross the veth:
// to and from ports, the AKS gateways' listening port or ports (an nft
// set such as "{ 51820, 51821 }").
func (c *clusters) firewall(ports string) {
	rules := map[string]string{
		c.eks: fmt.Sprintf(`table inet tunnel_e2e {
  chain input { type filter hook input priority 0; policy accept;
    iifname "veth0" ip saddr %s udp sport %s accept
    iifname "veth0" drop
  }
}`, aksVeth, ports),
		c.aks: fmt.Sprintf(`table inet tunnel_e2e {
  chain input { type filter hook input priority 0; policy accept;
    iifname "veth0" ip saddr %s udp dport %s accept
    iifname "veth0" drop
  }
}`, eksVeth, ports),
	}
	for ns, r := range rules {
		f := filepath.Join(c.dir, ns+".nft")
		writeFile(c.t, f, r)
		netns.MustRun(c.t, "ip", "netns", "exec", ns, "nft", "-f", f)
	}
}

func (c *clusters) startIn(ns, what, exe string, args ...string) *netns.Proc {
	c.t.Helper()
	p := netns.Start(c.t, ns, nil, exe, args...)
	p.Name = what
	return p
}

func (c *clusters) startRelay() {
	c.t.Helper()
	c.relay = c.startIn(c.eks, "relay", bin(c.t, "relay"), c.relayArgs...)
	c.waitReady(c.eks, relayAdmin)
}

// waitReady polls http://addr/readyz inside ns.
func (c *clusters) waitReady(ns, addr string) {
	c.t.Helper()
	hc := &http.Client{Timeout: time.Second, Transport: &http.Transport{DialContext: dialIn(ns)}}
	testutil.EventuallyEvery(c.t, 20*time.Second, 100*time.Millisecond, "readiness of "+addr+" in "+ns, func() bool {
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// relayCounter reads an unlabelled counter from relay's /metrics (-1
// when it cannot).
func (c *clusters) relayCounter(name string) float64 {
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialIn(c.eks)}}
	resp, err := hc.Get("http://" + relayAdmin + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
				return f
			}
		}
	}
	return -1
}

// dialIn dials from inside a namespace.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := netns.In(ns, func() (err error) {
			var d net.Dialer
			c, err = d.DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// listenIn opens a UDP socket inside a namespace, bound to addr.
func listenIn(t *testing.T, ns, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	if err := netns.In(ns, func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return pc
}

// status reads a gateway's tunnel status inside its namespace.
func (c *clusters) status(ns string) string {
	out, _ := netns.Output("ip", "netns", "exec", ns, bin(c.t, "tunnel"), "status", "--admin", "http://127.0.0.1:9090")
	return out
}

func noAnswerTCP(ns, addr string) error {
	return netns.In(ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err == nil {
			// A forward rule accepts locally, then dials the tunnel: the
			// flow must carry nothing.
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if n, _ := c.Read(make([]byte, 1)); n > 0 {
				return fmt.Errorf("%s answered", addr)
			}
			return nil
		}
		if strings.Contains(err.Error(), "timeout") || strings.Contains(err.Error(), "unreachable") {
			return nil
		}
		return err
	})
}

func noAnswerUDP(ns, addr string) error {
	return netns.In(ns, func() error {
		c, err := net.Dial("udp", addr)
		if err != nil {
			if strings.Contains(err.Error(), "unreachable") {
				return nil
			}
			return err
		}
		defer c.Close()
		for range 3 {
			_, _ = c.Write([]byte("anyone?"))
			_ = c.SetReadDeadline(time.Now().Add(700 * time.Millisecond))
			if _, err := c.Read(make([]byte, 64)); err == nil {
				return fmt.Errorf("%s answered", addr)
			}
		}
		return nil
	})
}
