package tunnel_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// fileSide is a gateway configured from files, as the daemon is.
type fileSide struct {
	dir  string
	cfg  string // config path
	gw   *tunnel.Gateway
	pub  keys.PublicKey
	body string
}

func (s *fileSide) write(t *testing.T, body string) {
	t.Helper()
	s.body = body
	if err := keys.WriteFile(s.cfg, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *fileSide) load(t *testing.T) *config.Config {
	t.Helper()
	c, err := config.Load(s.cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func (s *fileSide) reload(t *testing.T) tunnel.Changes {
	t.Helper()
	ch, err := s.gw.Reload(context.Background(), s.load(t))
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	return ch
}

func newFileSide(t *testing.T) *fileSide {
	t.Helper()
	dir := t.TempDir()
	pub, err := keys.WriteKeyPair(filepath.Join(dir, "keys"), false)
	if err != nil {
		t.Fatal(err)
	}
	return &fileSide{dir: dir, cfg: filepath.Join(dir, "gateway.yaml"), pub: pub}
}

func (s *fileSide) keyFile() string  { return filepath.Join(s.dir, "keys", keys.PrivateKeyFile) }
func (s *fileSide) peerFile() string { return filepath.Join(s.dir, "peer.pub") }

func (s *fileSide) start(t *testing.T) {
	t.Helper()
	s.gw = &tunnel.Gateway{Logger: testLogger(t)}
	if err := s.gw.Start(context.Background(), s.load(t)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.gw.Close() })
}

// filePair: aks listens and forwards; eks dials and exposes an echo. Each
// names its peer's key by a peer key file, as key stores write them.
func filePair(t *testing.T) (eks, aks *fileSide, echo string) {
	t.Helper()
	eks, aks = newFileSide(t), newFileSide(t)
	echo = udpEchoServer(t)
	writePeerFile(t, aks.peerFile(), eks.pub)
	writePeerFile(t, eks.peerFile(), aks.pub)
	aks.write(t, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: %s, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers: [{name: eks, publicKeyFile: %s, allowedIPs: [10.99.0.1/32]}]
forward: [{name: relay, protocol: udp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:7000"}]
admin: {listen: "-"}
`, aks.keyFile(), freeUDPPort(t), aks.peerFile()))
	aks.start(t)
	eks.write(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: %s, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKeyFile: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
expose: [{name: relay, protocol: udp, port: 7000, target: %q, peers: [aks]}]
admin: {listen: "-"}
`, eks.keyFile(), eks.peerFile(), aks.gw.ListenPort(), echo))
	eks.start(t)
	return eks, aks, echo
}

func writePeerFile(t *testing.T, path string, ks ...keys.PublicKey) {
	t.Helper()
	var b strings.Builder
	for _, k := range ks {
		b.WriteString(k.String() + "\n")
	}
	if err := keys.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func forwardAddr(t *testing.T, gw *tunnel.Gateway, name string) string {
	t.Helper()
	ap, ok := gw.ForwardAddr(name)
	if !ok {
		t.Fatalf("no forward rule %q", name)
	}
	return ap.String()
}

// udpSession opens a UDP session through gw's forward rule name: one
// datagram echoed through the tunnel. It is closed when the test ends.
func udpSession(t *testing.T, gw *tunnel.Gateway, name string) net.Conn {
	t.Helper()
	c, err := net.Dial("udp", forwardAddr(t, gw, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := udpRoundTrip(c, []byte("session "+name), 10, time.Second); err != nil {
		t.Fatalf("a session through forward rule %s: %v", name, err)
	}
	return c
}

// rotate replaces r's key make-before-break: o stages r's next key beside
// the current one, r switches to it, o hands r's address to the new key on
// its first handshake, then o revokes the old key. It returns the old key.
func rotate(t *testing.T, r, o *fileSide) keys.PrivateKey {
	t.Helper()
	oldKey, err := keys.LoadPrivateKey(r.keyFile())
	if err != nil {
		t.Fatal(err)
	}
	next, err := keys.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	// 1. Stage.
	writePeerFile(t, o.peerFile(), r.pub, next.Public())
	if ch := o.reload(t); len(ch.PeersChanged) != 1 || ch.PrivateKey {
		t.Fatalf("staging changed %v", ch)
	}
	// 2. Switch.
	if err := keys.WriteFile(r.keyFile(), []byte(next.Base64()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ch := r.reload(t); !ch.PrivateKey || len(ch.PeersChanged) != 0 {
		t.Fatalf("switch changed %v", ch)
	}
	// 3. Confirm: o sees r under the new key, which owns r's address.
	testutil.Eventually(t, 10*time.Second, "the new key to take over", func() bool {
		for _, ps := range o.gw.Status().Peers {
			if ps.PublicKey == next.Public().String() && ps.Key == "active" && !ps.LastHandshake.IsZero() {
				return true
			}
		}
		return false
	})
	// 4. Revoke.
	writePeerFile(t, o.peerFile(), next.Public())
	if ch := o.reload(t); len(ch.PeersChanged) != 1 {
		t.Fatalf("revoking changed %v", ch)
	}
	for _, ps := range o.gw.Status().Peers {
		if ps.PublicKey == r.pub.String() {
			t.Fatalf("the old key is still a peer after revocation: %+v", ps)
		}
	}
	r.pub = next.Public()
	return oldKey
}

// Rotating each side in turn while datagrams flow: no stall beyond a
// handshake, and afterwards the old key gets no handshake.
func TestRotationWithSuccessorKey(t *testing.T) {
	eks, aks, _ := filePair(t)
	p := pinger.Start(t, forwardAddr(t, aks.gw, "relay"), 5*time.Millisecond)
	testutil.Eventually(t, 10*time.Second, "echoes through the tunnel", func() bool { return p.Got.Load() > 20 })
	p.ResetGap()

	rotate(t, aks, eks)
	before := p.Got.Load()
	testutil.Eventually(t, 10*time.Second, "echoes after rotating aks", func() bool { return p.Got.Load() > before+20 })
	gapAKS := p.Gap()
	p.ResetGap()

	oldEKS := rotate(t, eks, aks)
	before = p.Got.Load()
	testutil.Eventually(t, 10*time.Second, "echoes after rotating eks", func() bool { return p.Got.Load() > before+20 })
	gapEKS := p.Gap()
	p.Halt()
	t.Logf("rotation under traffic: %d datagrams sent every 5ms, %d echoed; longest silence rotating aks %v, eks %v",
		p.Sent.Load(), p.Got.Load(), gapAKS, gapEKS)

	// A gateway holding eks's old key dials aks: no handshake, and aks
	// counts the refusal.
	refusedBefore := aks.gw.Status().WireGuard.HandshakeRefused
	old := startGateway(t, mustParse(t, fmt.Sprintf(`
interface: {name: old, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
admin: {listen: "-"}
`, aks.pub, aks.gw.ListenPort())), oldEKS)
	testutil.Eventually(t, 10*time.Second, "aks to refuse the old key's handshake", func() bool {
		return aks.gw.Status().WireGuard.HandshakeRefused > refusedBefore
	})
	for _, ps := range old.Status().Peers {
		if !ps.LastHandshake.IsZero() {
			t.Fatalf("the revoked key completed a handshake: %+v", ps)
		}
	}
}

func TestReloadRulesAndPeers(t *testing.T) {
	eks, aks, echo := filePair(t)
	c := udpSession(t, aks.gw, "relay")
	// A second exposed port; the first rule and its session are untouched.
	eks.write(t, strings.Replace(eks.body, "expose: [", fmt.Sprintf("expose: [{name: second, protocol: udp, port: 7001, target: %q, peers: [aks]}, ", echo), 1))
	ch := eks.reload(t)
	if len(ch.RulesStarted) != 1 || ch.UnchangedRules != 1 || ch.UnchangedPeers != 1 || len(ch.RulesStopped) != 0 {
		t.Fatalf("changes: %+v", ch)
	}
	if got, err := udpEcho(c, []byte("after"), 3, time.Second); err != nil || string(got) != "after" {
		t.Fatalf("the unchanged rule's session after the reload: %q %v", got, err)
	}
	if r := rule(t, eks.gw, "relay"); r.Flows != 1 {
		t.Fatalf("the unchanged rule restarted: %+v", r)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u, err := aks.gw.Dial(ctx, "udp", "10.99.0.1:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	if got, err := udpEcho(u, []byte("new port"), 5, time.Second); err != nil || string(got) != "new port" {
		t.Fatalf("new rule: %q %v", got, err)
	}
	// Removing it closes the port again.
	eks.write(t, strings.Replace(eks.body, fmt.Sprintf("{name: second, protocol: udp, port: 7001, target: %q, peers: [aks]}, ", echo), "", 1))
	if ch := eks.reload(t); len(ch.RulesStopped) != 1 {
		t.Fatalf("changes: %+v", ch)
	}
	if _, err := udpEcho(u, []byte("gone?"), 2, 300*time.Millisecond); err == nil {
		t.Fatal("a removed rule still answers")
	}
	// A change only a restart can apply is refused whole.
	bad := eks.load(t)
	bad.Interface.MTU = 1300
	bad.Expose = nil
	if _, err := eks.gw.Reload(context.Background(), bad); !errors.Is(err, tunnel.ErrNeedsRestart) {
		t.Fatalf("MTU change: %v", err)
	}
	if got, err := udpEcho(c, []byte("still"), 3, time.Second); err != nil || string(got) != "still" {
		t.Fatalf("after a refused reload: %q %v", got, err)
	}
}

// The watcher follows a config directory updated the way kubelet updates a
// mounted ConfigMap: a new timestamped directory and an atomic swap of the
// ..data symlink. A bad file is refused and the running config stays.
func TestWatcherFollowsSymlinkSwap(t *testing.T) {
	eks, aks, echo := filePair(t)
	mount := filepath.Join(t.TempDir(), "mount")
	publish := func(n int, body string) {
		ts := filepath.Join(mount, fmt.Sprintf("..2026_11_25_%d", n))
		if err := os.MkdirAll(ts, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(ts, "gateway.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(mount, "..data_tmp")
		_ = os.Remove(tmp)
		if err := os.Symlink(filepath.Base(ts), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(mount, "..data")); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(mount, "gateway.yaml")
		if _, err := os.Lstat(link); err != nil {
			if err := os.Symlink("..data/gateway.yaml", link); err != nil {
				t.Fatal(err)
			}
		}
	}
	publish(1, eks.body)
	var logs testutil.Buffer
	w := &tunnel.Watcher{Gateway: eks.gw, Path: filepath.Join(mount, "gateway.yaml"), Every: 20 * time.Millisecond,
		Logger: logs.Logger()}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	time.Sleep(100 * time.Millisecond)

	publish(2, strings.Replace(eks.body, "expose: [", fmt.Sprintf("expose: [{name: second, protocol: udp, port: 7001, target: %q, peers: [aks]}, ", echo), 1))
	testutil.Eventually(t, 5*time.Second, "the watcher to start the new rule", func() bool {
		for _, r := range eks.gw.Status().Rules {
			if r.Name == "second" {
				return true
			}
		}
		return false
	})
	publish(3, "interface: {addresses: [oops]}\n")
	testutil.Eventually(t, 5*time.Second, "the bad file to be refused in the log", func() bool {
		return logs.Contains("not valid; keeping the running one")
	})
	if len(eks.gw.Status().Rules) != 2 {
		t.Fatalf("a refused file changed the rules: %+v", eks.gw.Status().Rules)
	}
	_ = aks
}

// A rule that cannot start mid-reload (its port is taken), in a reload
// that also adds a peer and another rule: as Reload documents, the new
// peers and every other rule are in effect, the rule that failed is not
// running and is named in the error, the unchanged rule's flow carries on,
// and a later reload starts the failed rule once its port is free.
func TestReloadRuleFailsToStart(t *testing.T) {
	_, aks, _ := filePair(t)
	c := udpSession(t, aks.gw, "relay")
	blocker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	carol := testutil.PrivateKey(t).Public()
	body := strings.Replace(aks.body, "peers: [", fmt.Sprintf("peers: [{name: carol, publicKey: %s, allowedIPs: [10.99.0.3/32]}, ", carol), 1)
	body = strings.Replace(body, "forward: [", fmt.Sprintf(`forward: [{name: taken, protocol: tcp, listen: %q, peer: eks, to: "10.99.0.1:8000"}, `+
		`{name: fresh, protocol: udp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:7000"}, `, blocker.Addr()), 1)
	aks.write(t, body)
	want := aks.load(t)

	ch, err := aks.gw.Reload(context.Background(), want)
	if err == nil || !strings.Contains(err.Error(), `forward rule "taken"`) || !strings.Contains(err.Error(), blocker.Addr().String()) {
		t.Fatalf("reload error %v, want one naming rule taken and its address", err)
	}
	if fmt.Sprint(ch.RulesFailed, ch.RulesStarted, ch.PeersAdded) != "[taken] [fresh] [carol]" || ch.UnchangedRules != 1 || ch.UnchangedPeers != 1 {
		t.Fatalf("changes %+v", ch)
	}
	if aks.gw.Config() != want {
		t.Fatal("Config is not the reloaded configuration")
	}
	st := aks.gw.Status()
	var peers, rules []string
	for _, p := range st.Peers {
		peers = append(peers, p.Name)
	}
	for _, r := range st.Rules {
		rules = append(rules, r.Name)
	}
	slices.Sort(peers)
	slices.Sort(rules)
	if fmt.Sprint(peers, rules) != "[carol eks] [fresh relay]" {
		t.Fatalf("after the reload: peers %v, rules %v; want carol added, taken not running", peers, rules)
	}
	if _, ok := aks.gw.ForwardAddr("taken"); ok {
		t.Fatal("the rule that failed has a listener")
	}
	if err := aks.gw.Ready(); err != nil {
		t.Fatalf("ready: %v (a rule that never started is not a running rule that failed)", err)
	}
	if got, err := udpEcho(c, []byte("after"), 3, time.Second); err != nil || string(got) != "after" {
		t.Fatalf("the unchanged rule's flow after the reload: %q %v", got, err)
	}
	if r := rule(t, aks.gw, "relay"); r.Flows != 1 {
		t.Fatalf("the unchanged rule restarted: %+v", r)
	}
	udpSession(t, aks.gw, "fresh")

	// Its port free, the same configuration again starts just that rule.
	blocker.Close()
	ch, err = aks.gw.Reload(context.Background(), aks.load(t))
	if err != nil || fmt.Sprint(ch.RulesStarted) != "[taken]" || ch.UnchangedRules != 2 || len(ch.RulesFailed) != 0 {
		t.Fatalf("retry: %+v %v", ch, err)
	}
	if ap, ok := aks.gw.ForwardAddr("taken"); !ok || ap.String() != blocker.Addr().String() {
		t.Fatalf("taken listens on %v %v, want %s", ap, ok, blocker.Addr())
	}
}

// SIGHUP (Watcher.Trigger) reloads although no file changed: the way to
// start a rule whose port was taken, once it is free.
func TestWatcherTriggerRetriesFailedRule(t *testing.T) {
	_, aks, _ := filePair(t)
	blocker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer blocker.Close()
	var logs testutil.Buffer
	w := &tunnel.Watcher{Gateway: aks.gw, Path: aks.cfg, Every: 20 * time.Millisecond, Logger: logs.Logger()}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	logged := func(s string) func() bool { return func() bool { return logs.Contains(s) } }

	aks.write(t, strings.Replace(aks.body, "forward: [", fmt.Sprintf(`forward: [{name: taken, protocol: tcp, listen: %q, peer: eks, to: "10.99.0.1:8000"}, `, blocker.Addr()), 1))
	// The watcher may have hashed the files before or after the write;
	// a trigger reloads either way.
	w.Trigger()
	testutil.Eventually(t, 5*time.Second, "the reload to report the rule that failed", logged("rules failed to start: taken"))
	blocker.Close()
	w.Trigger()
	testutil.Eventually(t, 5*time.Second, "SIGHUP to start the rule", logged("rules started: taken"))
	if ap, ok := aks.gw.ForwardAddr("taken"); !ok || ap.String() != blocker.Addr().String() {
		t.Fatalf("taken listens on %v %v, want %s", ap, ok, blocker.Addr())
	}
}
