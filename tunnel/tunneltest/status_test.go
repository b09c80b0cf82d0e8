package tunneltest

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pinger"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/rotate"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// HTTPStatus reads <base>/status and refuses a status whose keys do not
// parse.
func TestHTTPStatus(t *testing.T) {
	k := testutil.PrivateKey(t).Public().String()
	body := ""
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/base/status" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(body))
	}))
	defer srv.Close()
	u, err := rotate.ParseStatusURL(srv.URL + "/base")
	if err != nil {
		t.Fatal(err)
	}
	src := &rotate.HTTPStatus{URL: u}
	b, _ := json.Marshal(tunnel.Status{PublicKey: k, Peers: []tunnel.PeerStatus{{Name: "aks", PublicKey: k, Key: "active"}}})
	body = string(b)
	sts, err := src.Statuses(context.Background())
	if err != nil || len(sts) != 1 || sts[0].PublicKey != k || sts[0].Peers[0].Key != "active" {
		t.Fatalf("%+v %v", sts, err)
	}
	body = `{"public_key": "AAAA"}`
	if _, err := src.Statuses(context.Background()); err == nil || !strings.Contains(err.Error(), "public_key") {
		t.Fatalf("bad key: %v", err)
	}
	u404, _ := rotate.ParseStatusURL(srv.URL + "/elsewhere")
	if _, err := (&rotate.HTTPStatus{URL: u404}).Statuses(context.Background()); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("404: %v", err)
	}
}

// GatewayStatus reads the fields a rotation needs from a real gateway's
// /status, in every state a peer's key can be in: active with a
// handshake, and a staged successor.
func TestGatewayStatusMatchesTheGateway(t *testing.T) {
	p := startPair(t)
	ping := pinger.Start(t, p.Forward(t), 10*time.Millisecond)
	ping.Flowing(t, 10*time.Second, 5, "before")
	next := testutil.PrivateKey(t).Public()
	set(t, p.EKS.Store(), map[string][]byte{"peer.aks.pub": keys.FormatPeerKeys(p.AKS.PublicKey(), next)})
	testutil.Eventually(t, 5*time.Second, "eks to stage the successor", func() bool { return lists(p.EKS, next) })

	src := httpStatus(t, p.EKS.AdminURL())
	sts, err := src.Statuses(context.Background())
	if err != nil || len(sts) != 1 {
		t.Fatalf("%v %v", sts, err)
	}
	want := p.EKS.Gateway.Status()
	got := sts[0]
	if got.PublicKey != want.PublicKey || len(got.Peers) != len(want.Peers) || len(got.Peers) != 2 {
		t.Fatalf("got %+v, the gateway says %+v", got, want)
	}
	// The gateway lists its peers in no set order: compare them by key.
	slices.SortFunc(got.Peers, func(a, b rotate.PeerStatus) int { return strings.Compare(a.PublicKey, b.PublicKey) })
	slices.SortFunc(want.Peers, func(a, b tunnel.PeerStatus) int { return strings.Compare(a.PublicKey, b.PublicKey) })
	for i, w := range want.Peers {
		g := got.Peers[i]
		if g.Name != w.Name || g.Key != w.Key || g.PublicKey != w.PublicKey || !g.LastHandshake.Equal(w.LastHandshake) {
			t.Fatalf("peer %d: got %+v, the gateway says %+v", i, g, w)
		}
	}
	roles := map[string]string{}
	for _, ps := range got.Peers {
		roles[ps.PublicKey] = ps.Key
		if ps.PublicKey == p.AKS.PublicKey().String() && ps.LastHandshake.IsZero() {
			t.Fatal("the active key's handshake did not come through")
		}
	}
	if roles[p.AKS.PublicKey().String()] != "active" || roles[next.String()] != "successor" {
		t.Fatalf("key roles %v", roles)
	}
}
