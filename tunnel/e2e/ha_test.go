package e2e

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/netns"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// haGateway is one gateway replica of the HA clusters.
type haGateway struct {
	name, ns, admin string
	addr            string // its tunnel address
	args            []string
	proc            *netns.Proc
	started         time.Time
}

// haClusters is the clusters with two gateways a side: eks-a (10.99.0.1)
// and eks-b (10.99.0.11) beside relay, aks-a (10.99.0.2, WireGuard on
// udp/51820, relay's port on 127.0.0.1:7443) and aks-b (10.99.0.12,
// udp/51821, 127.0.0.2:7443) beside bunny. Each has its own key; each EKS
// gateway dials both AKS ones (1 s keepalives both ways, so all four
// pairs stay warm); each AKS gateway forwards to eks-a, then eks-b; bunny
// lists both AKS gateways' ports.
type haClusters struct {
	*clusters
	gws map[string]*haGateway
}

var haNames = []string{"eks-a", "eks-b", "aks-a", "aks-b"}

func startHAClusters(t *testing.T) *haClusters {
	t.Helper()
	c := &haClusters{clusters: newClusters(t), gws: map[string]*haGateway{}}
	c.firewall("{ 51820, 51821 }")
	pubs := map[string]keys.PublicKey{}
	for _, n := range haNames {
		pub, err := keys.WriteKeyPair(filepath.Join(c.dir, n), false)
		if err != nil {
			t.Fatal(err)
		}
		pubs[n] = pub
	}
	peerFile := func(gw, peer string) string {
		f := filepath.Join(c.dir, gw, keys.PeerKeyFile(peer))
		writeFile(t, f, string(keys.FormatPeerKeys(pubs[peer])))
		return f
	}
	c.setupRelay()

	spec := []struct {
		name, ns, addr, admin, port, fwd string
	}{
		{"eks-a", c.eks, "10.99.0.1", "127.0.0.1:9090", "", ""},
		{"eks-b", c.eks, "10.99.0.11", "127.0.0.1:9092", "", ""},
		{"aks-a", c.aks, "10.99.0.2", "127.0.0.1:9090", "51820", "127.0.0.1:7443"},
		{"aks-b", c.aks, "10.99.0.12", "127.0.0.1:9092", "51821", "127.0.0.2:7443"},
	}
	for i, s := range spec {
		var conf string
		iface := fmt.Sprintf("name: %s, privateKeyFile: %s, addresses: [%s]", netns.Name(fmt.Sprintf("th%d", i)), filepath.Join(c.dir, s.name, keys.PrivateKeyFile), s.addr)
		if s.ns == c.eks {
			conf = fmt.Sprintf(`
interface: {%s}
peers:
  - {name: aks-a, publicKeyFile: %s, endpoint: "%s:51820", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}
  - {name: aks-b, publicKeyFile: %s, endpoint: "%s:51821", persistentKeepalive: 1s, allowedIPs: [10.99.0.12/32]}
expose:
  - {name: relay, protocol: udp, port: 7443, target: "%s:7443", peers: [aks-a, aks-b]}
admin: {listen: "%s"}
`, iface, peerFile(s.name, "aks-a"), aksVeth, peerFile(s.name, "aks-b"), aksVeth, relayPod, s.admin)
		} else {
			conf = fmt.Sprintf(`
interface: {%s, listenPort: %s}
peers:
  - {name: eks-a, publicKeyFile: %s, persistentKeepalive: 1s, allowedIPs: [10.99.0.1/32]}
  - {name: eks-b, publicKeyFile: %s, persistentKeepalive: 1s, allowedIPs: [10.99.0.11/32]}
forward:
  - name: relay
    protocol: udp
    listen: "%s"
    upstreams: [{peer: eks-a, to: "10.99.0.1:7443"}, {peer: eks-b, to: "10.99.0.11:7443"}]
admin: {listen: "%s"}
`, iface, s.port, peerFile(s.name, "eks-a"), peerFile(s.name, "eks-b"), s.fwd, s.admin)
		}
		path := filepath.Join(c.dir, s.name+".yaml")
		writeFile(t, path, conf)
		c.gws[s.name] = &haGateway{name: s.name, ns: s.ns, admin: s.admin, addr: s.addr,
			args: []string{"gateway", "--config", path, "--log-format", "json"}}
	}
	// AKS first, as in a rollout: the EKS gateways dial them.
	for _, n := range []string{"aks-a", "aks-b", "eks-a", "eks-b"} {
		c.startGW(n)
	}
	c.waitWarm("start")
	return c
}

// startGW starts (or restarts) a gateway and waits until it is ready.
func (c *haClusters) startGW(name string) {
	c.t.Helper()
	g := c.gws[name]
	g.started = time.Now()
	g.proc = c.startIn(g.ns, name, bin(c.t, "tunnel"), g.args...)
	c.waitReady(g.ns, g.admin)
}

// gwStatus reads a gateway's /status.
func (c *haClusters) gwStatus(name string) (tunnel.Status, error) {
	g := c.gws[name]
	return readStatus(g.ns, g.admin)
}

// warm reports whether a gateway has a handshake with both gateways of the
// other side since it started and, on AKS, both upstreams healthy.
func (c *haClusters) warm(name string) bool {
	st, err := c.gwStatus(name)
	return err == nil && len(st.Peers) == 2 && st.Warm(c.gws[name].started)
}

// waitWarm waits until every gateway is warm.
func (c *haClusters) waitWarm(what string) {
	c.t.Helper()
	testutil.EventuallyEvery(c.t, 60*time.Second, 100*time.Millisecond, "all four gateway pairs handshaken and healthy ("+what+")", func() bool {
		for _, n := range haNames {
			if !c.warm(n) {
				return false
			}
		}
		return true
	})
}

// busiestEKS is the EKS gateway that received more from its peers over a
// second: the one the jobs flow through.
func (c *haClusters) busiestEKS() string {
	c.t.Helper()
	rx := func(n string) uint64 {
		st, err := c.gwStatus(n)
		if err != nil {
			c.t.Fatalf("status of %s: %v", n, err)
		}
		var sum uint64
		for _, p := range st.Peers {
			sum += p.RxBytes
		}
		return sum
	}
	a0, b0 := rx("eks-a"), rx("eks-b")
	time.Sleep(time.Second)
	if rx("eks-a")-a0 >= rx("eks-b")-b0 {
		return "eks-a"
	}
	return "eks-b"
}

// TestHAGatewayFaults is issue 13's fault test: relay and two EKS
// gateways in one namespace, bunny and two AKS gateways in the other,
// only WireGuard's UDP between them, 200 jobs/s. Each of the four gateways
// is SIGKILLed in turn and restarted, then the link of the EKS gateway
// carrying the jobs is dropped for 15 s. Every job must succeed
// exactly once with the right result at attempt 1 (the leases survive:
// bunny's connection moves between the AKS gateways, relay's between the
// EKS ones, and no lease answer is lost), the longest pause between
// handled jobs must stay under 5 s for every fault, and a restarted
// gateway must rejoin (handshakes with both of the other side's) with
// nothing else restarted.
func TestHAGatewayFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("the HA fault suite takes a minute or two; skipped with -short")
	}
	c := startHAClusters(t)
	h := c.startHandler()
	c.startBunnyAt(`["127.0.0.1:7443", "127.0.0.2:7443"]`)

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	p := c.produce(ctx, 100_000, submitPerSec)
	defer func() {
		select {
		case <-p.stop:
		default:
			close(p.stop)
		}
	}()

	// flowing waits until n more jobs have been handled.
	flowing := func(what string, n int64) {
		t.Helper()
		base := h.all.Load()
		testutil.EventuallyEvery(t, 60*time.Second, 50*time.Millisecond, fmt.Sprintf("%d more jobs handled after %s", n, what), func() bool {
			return h.all.Load() >= base+n
		})
	}
	flowing("start", 400)

	type figure struct {
		fault         string
		pause, rejoin time.Duration
	}
	var figures []figure
	const bound = 5 * time.Second
	record := func(fault string, from time.Time, rejoin time.Duration) {
		t.Helper()
		pause := h.longestGap(from, time.Now())
		figures = append(figures, figure{fault, pause, rejoin})
		t.Logf("fault %q: longest pause between handled jobs %v; rejoin (or recovery) %v", fault, pause.Round(time.Millisecond), rejoin.Round(time.Millisecond))
		if pause >= bound {
			t.Errorf("fault %q: jobs paused %v, want under %v", fault, pause.Round(time.Millisecond), bound)
		}
	}

	for _, n := range haNames {
		fault := n + " SIGKILL and restart"
		from := time.Now()
		c.gws[n].proc.Kill()
		time.Sleep(time.Second)
		c.startGW(n)
		testutil.EventuallyEvery(t, 60*time.Second, 50*time.Millisecond, n+" to rejoin", func() bool { return c.warm(n) })
		rejoin := time.Since(c.gws[n].started)
		flowing(fault, 400)
		record(fault, from, rejoin)
		c.waitWarm("after " + fault)
	}

	// The link of the EKS gateway carrying the jobs (the one receiving
	// more from the AKS side): its WireGuard port, both ways, for 15 s.
	busy := c.busiestEKS()
	st, err := c.gwStatus(busy)
	if err != nil || st.ListenPort == 0 {
		t.Fatalf("%s's port: %v (%d)", busy, err, st.ListenPort)
	}
	drop := filepath.Join(c.dir, "drop.nft")
	writeFile(t, drop, fmt.Sprintf(`table inet ha_drop {
  chain in { type filter hook input priority -10; policy accept; udp dport %d drop; }
  chain out { type filter hook output priority -10; policy accept; udp sport %d drop; }
}`, st.ListenPort, st.ListenPort))
	undrop := func() { _, _ = netns.Output("ip", "netns", "exec", c.eks, "nft", "delete", "table", "inet", "ha_drop") }
	t.Cleanup(undrop)
	fault := busy + " link dropped 15 s"
	from := time.Now()
	netns.MustRun(t, "ip", "netns", "exec", c.eks, "nft", "-f", drop)
	time.Sleep(15 * time.Second)
	undrop()
	back := time.Now()
	testutil.EventuallyEvery(t, 60*time.Second, 50*time.Millisecond, busy+"'s pairs to recover", func() bool {
		return c.warm("aks-a") && c.warm("aks-b") && c.warm(busy)
	})
	recovered := time.Since(back)
	flowing(fault, 400)
	record(fault, from, recovered)

	// Rotating aks-a's key with both EKS replicas' stores: staged at
	// both before aks-a switches, so neither pair goes down.
	store := func(n string) string { return "dir:" + filepath.Join(c.dir, n) }
	admin := func(n string) string { return c.adminProxy(c.gws[n].ns, c.gws[n].admin) }
	before, err := c.gwStatus("aks-a")
	if err != nil {
		t.Fatal(err)
	}
	from = time.Now()
	out, err := exec.Command(bin(t, "tunnel"), "keys", "rotate", "--store", store("aks-a"),
		"--peer-store", store("eks-a"), "--peer-store", store("eks-b"),
		"--status", admin("aks-a"), "--peer-status", admin("eks-a"), "--peer-status", admin("eks-b"), "--timeout", "1m").CombinedOutput()
	t.Logf("rotating aks-a's key against eks-a and eks-b (%v):\n%s", time.Since(from).Round(time.Millisecond), out)
	if err != nil || !strings.Contains(string(out), "done: ") {
		t.Fatalf("tunnel keys rotate: %v", err)
	}
	for _, n := range []string{"eks-a", "eks-b"} {
		st, err := c.gwStatus(n)
		if err != nil {
			t.Fatal(err)
		}
		for _, pe := range st.Peers {
			if pe.Name == "aks-a" && (pe.PublicKey == before.PublicKey || pe.Key != "active" || pe.LastHandshake.IsZero()) {
				t.Errorf("%s after the rotation: aks-a is %+v, want the new key active and handshaken", n, pe)
			}
		}
	}
	c.waitWarm("after rotating aks-a")
	flowing("rotating aks-a's key", 400)
	record("aks-a key rotated (two peer stores)", from, 0)

	close(p.stop)
	<-p.done
	if p.err != nil {
		t.Fatal(p.err)
	}
	p.mu.Lock()
	submitted := len(p.want)
	p.mu.Unlock()
	retried, twice := c.verifyJobs(ctx, p, h, submitted, 2*time.Minute)
	if twice > 0 {
		t.Errorf("%d payloads ran more than once, want each once", twice)
	}
	logs := c.bunny.Output()
	var summary []string
	for _, f := range figures {
		summary = append(summary, fmt.Sprintf("%s: pause %v, rejoin %v", f.fault, f.pause.Round(time.Millisecond), f.rejoin.Round(time.Millisecond)))
	}
	t.Logf("%d jobs, each succeeded once with the right result; %d needed a second attempt; bunny moved between the AKS gateways %d times and reconnected %d times; relay undid the leases of %v jobs whose answer was lost with a connection\n  %s",
		submitted, retried, strings.Count(logs, "moving to the next address"), strings.Count(logs, "reconnected to relay"),
		c.relayCounter("relay_lease_answers_lost_total"), strings.Join(summary, "\n  "))
	if retried > 0 {
		t.Errorf("%d jobs needed a second attempt, want none", retried)
	}
}
