package tunnel_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// startWatched starts a gateway logging into log, its peer watcher polling
// every 20ms and calling a peer silent after silentAfter. The returned
// stop closes it early (cleanup closes it anyway).
func startWatched(t *testing.T, c *config.Config, key keys.PrivateKey, log *testutil.Buffer, silentAfter time.Duration) (*tunnel.Gateway, func()) {
	t.Helper()
	gw := &tunnel.Gateway{PrivateKey: &key, Logger: log.Logger()}
	tunnel.SetPeerWatch(gw, 20*time.Millisecond, silentAfter)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := gw.Start(ctx, c); err != nil {
		t.Fatalf("start gateway: %v", err)
	}
	t.Cleanup(func() { gw.Close() })
	return gw, func() { gw.Close() }
}

func listeningSide(t *testing.T, port int, peer keys.PublicKey) *config.Config {
	return mustParse(t, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers:
  - {name: eks, publicKey: %s, allowedIPs: [10.99.0.1/32]}
admin: {listen: "127.0.0.1:0"}
`, port, peer))
}

func diallingSide(t *testing.T, port int, peer keys.PublicKey) *config.Config {
	return mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}
admin: {listen: "-"}
`, peer, port))
}

// Both sides log their first handshake once; the listening side logs the
// peer's silence once when the peer goes away and its return once when a
// gateway with the peer's key dials in again; tunnel_auth_events_total
// counts each, its series there from the start.
func TestPeerHandshakeSilenceAndReturnLoggedOnce(t *testing.T) {
	eksKey, aksKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	port := freeUDPPort(t)
	var aksLog, eksLog testutil.Buffer
	aks, _ := startWatched(t, listeningSide(t, port, eksKey.Public()), aksKey, &aksLog, 2*time.Second)
	for _, ev := range []string{"first_handshake", "silent", "back", "unknown_key"} {
		if v := authEvents(t, aks)[ev]; v != "0" {
			t.Fatalf("tunnel_auth_events_total{event=%q} = %q at start, want 0", ev, v)
		}
	}
	_, stopEks := startWatched(t, diallingSide(t, port, aksKey.Public()), eksKey, &eksLog, time.Hour)
	defer func() {
		if t.Failed() {
			t.Log(aksLog.String())
		}
	}()

	first := "peer eks handshake complete, endpoint 127.0.0.1:"
	testutil.Eventually(t, 10*time.Second, "aks to log the first handshake", func() bool { return aksLog.Contains(first) })
	testutil.Eventually(t, 10*time.Second, "eks to log the first handshake", func() bool {
		return eksLog.Contains(fmt.Sprintf("peer aks handshake complete, endpoint 127.0.0.1:%d", port))
	})

	stopEks()
	testutil.Eventually(t, 10*time.Second, "aks to call eks silent", func() bool {
		return aksLog.Contains("peer eks silent: no handshake for longer than 2s")
	})

	var eksLog2 testutil.Buffer
	startWatched(t, diallingSide(t, port, aksKey.Public()), eksKey, &eksLog2, time.Hour)
	testutil.Eventually(t, 10*time.Second, "aks to log eks back", func() bool { return aksLog.Contains("peer eks back, endpoint 127.0.0.1:") })
	// Checked at once: a further silence takes 2s without a handshake.
	for line, want := range map[string]int{first: 1, "peer eks silent": 1, "peer eks back": 1} {
		if n := aksLog.Count(line); n != want {
			t.Errorf("%q logged %d times, want %d", line, n, want)
		}
	}
	ev := authEvents(t, aks)
	if ev["first_handshake"] != "1" || ev["silent"] != "1" || ev["back"] != "1" {
		t.Errorf("tunnel_auth_events_total = %v, want first_handshake, silent and back at 1", ev)
	}
}

// A peer that never completes a handshake is reported once, with a hint.
func TestPeerNeverAnsweringLoggedOnce(t *testing.T) {
	var log testutil.Buffer
	startWatched(t, mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, endpoint: "127.0.0.1:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}
admin: {listen: "-"}
`, testutil.PrivateKey(t).Public(), freeUDPPort(t))), testutil.PrivateKey(t), &log, 300*time.Millisecond)
	const line = "peer aks has not completed a handshake since the gateway started"
	testutil.Eventually(t, 10*time.Second, "the never-answering peer to be reported", func() bool { return log.Contains(line) })
	time.Sleep(500 * time.Millisecond) // more polls, past the bound again
	if n := log.Count(line); n != 1 {
		t.Fatalf("%q logged %d times, want once:\n%s", line, n, log.String())
	}
	if !log.Contains("this gateway's public key") {
		t.Fatalf("no hint in:\n%s", log.String())
	}
}

// A peer reported silent before its first handshake is counted back when
// it comes, so silent minus back is zero again.
func TestPeerLateFirstHandshakeCountsBack(t *testing.T) {
	eksKey, aksKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	port := freeUDPPort(t)
	var aksLog, eksLog testutil.Buffer
	// A second after its first handshake it is silent again: checked at once.
	aks, _ := startWatched(t, listeningSide(t, port, eksKey.Public()), aksKey, &aksLog, time.Second)
	testutil.Eventually(t, 10*time.Second, "aks to report eks silent", func() bool {
		return aksLog.Contains("peer eks has not completed a handshake since the gateway started")
	})
	startWatched(t, diallingSide(t, port, aksKey.Public()), eksKey, &eksLog, time.Hour)
	testutil.Eventually(t, 10*time.Second, "aks to log the first handshake", func() bool {
		return aksLog.Contains("peer eks handshake complete")
	})
	ev := authEvents(t, aks)
	if ev["silent"] != "1" || ev["back"] != "1" || ev["first_handshake"] != "1" {
		t.Fatalf("tunnel_auth_events_total = %v, want silent, back and first_handshake at 1", ev)
	}
}

// A stranger retrying its handshake gets one line on the receiving
// gateway, naming its source and its public key (read from the
// initiation), however often it retries within the interval; every retry
// is counted, under its key too.
func TestUnknownKeyLoggedOncePerInterval(t *testing.T) {
	eksKey := testutil.PrivateKey(t)
	var log testutil.Buffer
	eks, _ := startWatched(t, mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, listenPort: %d, addresses: [10.99.0.1], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, allowedIPs: [10.99.0.2/32]}
admin: {listen: "127.0.0.1:0"}
`, freeUDPPort(t), testutil.PrivateKey(t).Public())), eksKey, &log, time.Hour)
	strangerKey := testutil.PrivateKey(t)
	stranger := startStranger(t, &pair{eks: eks, eksKey: eksKey}, strangerKey, "10.99.0.3", "")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	go func() {
		// Each SYN retransmission waits on a handshake WireGuard retries
		// every five seconds.
		if c, err := stranger.Dial(ctx, "tcp", "10.99.0.1:8000"); err == nil {
			c.Close()
		}
	}()
	testutil.EventuallyEvery(t, 20*time.Second, 100*time.Millisecond, "two refused handshakes", func() bool {
		return eks.Status().WireGuard.HandshakeRefused >= 2
	})
	cancel()
	const line = "refused a WireGuard handshake"
	if n := log.Count(line); n != 1 {
		t.Fatalf("%q logged %d times for %d refusals, want once:\n%s", line, n, eks.Status().WireGuard.HandshakeRefused, log.String())
	}
	if !log.Contains("source=127.0.0.1:") {
		t.Fatalf("the line does not name the source:\n%s", log.String())
	}
	if !log.Contains(`key="` + strangerKey.Public().String() + `"`) {
		t.Fatalf("the line does not name the stranger's key %s:\n%s", strangerKey.Public(), log.String())
	}
	v := authEvents(t, eks)["unknown_key"]
	if v == "0" || v == "1" {
		t.Fatalf("tunnel_auth_events_total{event=\"unknown_key\"} = %s, want every refusal counted", v)
	}
	if byKey := unknownKeys(t, eks); byKey[strangerKey.Public().String()] != v || byKey["unread"] != "0" {
		t.Fatalf("tunnel_unknown_key_handshakes_total = %v, want all %s refusals under the stranger's key", byKey, v)
	}
}

// unknownKeys scrapes tunnel_unknown_key_handshakes_total by key.
func unknownKeys(t *testing.T, g *tunnel.Gateway) map[string]string {
	t.Helper()
	return scrapeByLabel(t, g, `tunnel_unknown_key_handshakes_total{key="`)
}

// authEvents scrapes tunnel_auth_events_total by event.
func authEvents(t *testing.T, g *tunnel.Gateway) map[string]string {
	t.Helper()
	return scrapeByLabel(t, g, `tunnel_auth_events_total{event="`)
}

// scrapeByLabel scrapes the series of one metric with one label, by the
// label's value; prefix is the metric's name, "{", the label and `="`.
func scrapeByLabel(t *testing.T, g *tunnel.Gateway, prefix string) map[string]string {
	t.Helper()
	resp, err := http.Get(g.AdminURL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		ev, val, _ := strings.Cut(rest, `"} `)
		out[ev] = strings.TrimSpace(val)
	}
	return out
}
