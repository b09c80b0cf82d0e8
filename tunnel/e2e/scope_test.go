package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/client"
)

// TestClusterScope proves, from the "aks" namespace, that relay's one port
// is all the tunnel carries: relay's pod address cannot be reached
// directly, the tunnel reaches relay's QUIC port, and other ports and
// addresses through the tunnel get no answer.
func TestClusterScope(t *testing.T) {
	c := startClusters(t)
	id, err := keys.LoadIdentity(c.bunnyCert, c.bunnyKey)
	if err != nil {
		t.Fatal(err)
	}
	// Directly: relay's pod address, though routed, is dropped at eks:
	// neither a QUIC handshake nor relay's API answers.
	dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Second)
	if rc, err := client.Dial(dctx, client.Options{Addr: relayPod + ":7443", Identity: id, RelayPin: c.relayPin, PacketConn: listenIn(t, c.aks, "0.0.0.0:0")}); err == nil {
		rc.Close()
		t.Error("relay's QUIC port answered directly, around the tunnel")
	}
	dcancel()
	hc := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DialContext: dialIn(c.aks)}}
	if resp, err := hc.Get("http://" + relayPod + ":8080/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("relay's producer API answered directly from aks: %s", resp.Status)
	}
	// Through the tunnel: a QUIC handshake with relay, as bunny makes it.
	pc := listenIn(t, c.aks, "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rc, err := client.Dial(ctx, client.Options{Addr: "127.0.0.1:7443", Identity: id, RelayPin: c.relayPin, PacketConn: pc})
	if err != nil {
		t.Fatalf("relay through the tunnel: %v\n%s", err, c.status(c.aks))
	}
	jobs, err := rc.Lease(ctx, client.LeaseOptions{Queues: []string{"e2e"}, Max: 1, Wait: 100 * time.Millisecond})
	if err != nil || len(jobs) != 0 {
		t.Fatalf("an empty lease through the tunnel: %v %v", jobs, err)
	}
	rc.Close()
	// Other ports and addresses through the tunnel: silence.
	for _, x := range []struct {
		what string
		err  error
	}{
		{"relay's API port through the tunnel", noAnswerTCP(c.aks, "127.0.0.1:8080")},
		{"another UDP port through the tunnel", noAnswerUDP(c.aks, "127.0.0.1:7444")},
		{"another tunnel address", noAnswerUDP(c.aks, "127.0.0.1:7445")},
	} {
		if x.err != nil {
			t.Errorf("%s: %v", x.what, x.err)
		}
	}
	st := c.status(c.eks)
	t.Logf("eks gateway:\n%s", st)
	for _, want := range []string{"not_exposed=", "not_our_address="} {
		if !strings.Contains(st, want) {
			t.Errorf("eks status lacks %s", want)
		}
	}
}
