package tunnel_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// A listening gateway (no endpoint for its peer, as on AKS) that is
// stopped and started again on its port rejoins within seconds: its
// dialling peer renews the session of a peer that went silent. Without
// that, the dialling side kept sending keepalives into a session the
// restarted gateway no longer had until the session was two minutes old.
func TestRestartedListenerRejoins(t *testing.T) {
	lKey, dKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	port := freeUDPPort(t)
	listenerConf := fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers:
  - {name: eks, publicKey: %s, persistentKeepalive: 1s, allowedIPs: [10.99.0.1/32]}
admin: {listen: "-"}
`, port, dKey.Public())
	listener := startGateway(t, mustParse(t, listenerConf), lKey)
	logs := &testutil.Buffer{}
	dialler := &tunnel.Gateway{PrivateKey: &dKey, Logger: logs.Logger()}
	startConfigured(t, dialler, mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}
admin: {listen: "-"}
`, lKey.Public(), port)))
	handshaken := func(g *tunnel.Gateway, after time.Time) bool {
		st := g.Status()
		return len(st.Peers) > 0 && st.Peers[0].LastHandshake.After(after)
	}
	testutil.Eventually(t, 20*time.Second, "the first handshake", func() bool { return handshaken(listener, time.Time{}) })
	// Long enough for the dialler to see the listener keep alive every
	// second.
	time.Sleep(5 * time.Second)

	listener.Close()
	time.Sleep(time.Second)
	restarted := time.Now()
	listener = startGateway(t, mustParse(t, listenerConf), lKey)
	testutil.EventuallyEvery(t, 30*time.Second, 50*time.Millisecond, "the restarted listener to rejoin", func() bool {
		return handshaken(listener, restarted)
	})
	t.Logf("the restarted listener rejoined %v after it started", time.Since(restarted).Round(time.Millisecond))
	if !logs.Contains("renewing its session") {
		t.Errorf("the dialler logged no renewal:\n%s", logs.String())
	}
	// A restarted peer answers the renewal and then keeps talking: it is
	// not mistaken for a key held by two gateways, whose renewed sessions
	// go quiet again (keyclash.go). Three silence bounds of 2.5 s.
	renewals := logs.Count("renewing its session")
	time.Sleep(8 * time.Second)
	if n := logs.Count("renewing its session"); n != renewals {
		t.Errorf("the dialler renewed %d more times after the listener rejoined", n-renewals)
	}
	if logs.Contains("ONE PRIVATE KEY") {
		t.Errorf("a restarted peer was reported as a shared key:\n%s", grepLines(logs.String(), "level=ERROR"))
	}
}
