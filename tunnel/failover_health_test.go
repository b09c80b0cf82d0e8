package tunnel

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// The health bound, poll by poll: a peer heard from within 2 × keepalive
// + 0.5 s is healthy; silence past it, or no session, is not.
func TestHealthJudge(t *testing.T) {
	k := keys.PublicKey{1}
	p := []peer{{name: "eks-a", key: k, owner: k, keepalive: time.Second}}
	t0 := time.Unix(1_000_000, 0)
	w := &healthWatcher{keys: map[keys.PublicKey]*heard{}, warnedDup: map[keys.PublicKey]time.Time{}}
	log := slog.New(slog.DiscardHandler)
	steps := []struct {
		at      time.Duration
		hs      time.Duration // handshake time, from t0; <0: never
		rx      uint64
		healthy bool
		reason  string
	}{
		{0, -1, 0, false, reasonNoHandshake},
		{time.Second, time.Second, 148, true, ""},
		{3400 * time.Millisecond, time.Second, 148, true, ""}, // 2.4 s silent
		{3600 * time.Millisecond, time.Second, 148, false, reasonKeepaliveMissed},
		{4 * time.Second, time.Second, 180, true, ""}, // a keepalive arrived
		{6600 * time.Millisecond, time.Second, 180, false, reasonKeepaliveMissed},
		{190 * time.Second, time.Second, 212, false, reasonNoHandshake}, // session too old
	}
	for _, s := range steps {
		dp := devicePeer{Key: k, RxBytes: s.rx, Endpoint: "127.0.0.1:1"}
		if s.hs >= 0 {
			dp.LastHandshake = t0.Add(s.hs)
		}
		h := w.judge(log, p, deviceState{Peers: []devicePeer{dp}}, t0.Add(s.at))["eks-a"]
		if h.healthy != s.healthy || h.reason != s.reason {
			t.Errorf("at +%v: %+v, want healthy %v reason %q", s.at, h, s.healthy, s.reason)
		}
	}
	if b := healthBound(time.Second); b != 2500*time.Millisecond {
		t.Errorf("bound for a 1s keepalive = %v", b)
	}
}

// New flows go to the first healthy upstream; when none is, they stay.
func TestUpstreamsUpdate(t *testing.T) {
	u := newUpstreams("r", []config.Upstream{
		{Peer: "a", To: netip.MustParseAddrPort("10.99.0.1:1")},
		{Peer: "b", To: netip.MustParseAddrPort("10.99.0.11:1")},
	})
	log := slog.New(slog.DiscardHandler)
	up, down := peerHealth{healthy: true}, peerHealth{reason: reasonKeepaliveMissed}
	for _, s := range []struct {
		a, b peerHealth
		want string
	}{
		{up, up, "a"},
		{down, up, "b"},
		{down, down, "b"}, // nowhere better
		{up, up, "a"},     // the preferred one is back
		{up, up, "a"},
	} {
		u.update(log, map[string]peerHealth{"a": s.a, "b": s.b})
		if got := u.current().Peer; got != s.want {
			t.Errorf("a %+v, b %+v: current %s, want %s", s.a, s.b, got, s.want)
		}
	}
	_, _, fs := u.status()
	if len(fs) != 2 || fs[0].Reason != reasonKeepaliveMissed || fs[1].Reason != "recovered" {
		t.Errorf("failovers = %+v", fs)
	}
}

// A reload that removes a peer (or rotates its key away) leaves nothing of
// it in the health watcher: every map keeps only live keys.
func TestWatcherForgetsRemovedPeers(t *testing.T) {
	live, gone := keys.PublicKey{1}, keys.PublicKey{2}
	w := newHealthWatcher()
	now := time.Unix(1_000_000, 0)
	for _, k := range []keys.PublicKey{live, gone} {
		w.keys[k] = &heard{at: now}
		w.warnedDup[k] = now
		w.rehandshook[k] = now
		w.clash[k] = keyClash{last: now}
		w.sent[k] = sentSeen{at: now}
		w.confirmed[k] = sessionSeen{handshake: now}
		w.pending[k] = firstSeen{since: now}
	}
	w.forget([]peer{{name: "eks-a", key: live, owner: live}}, deviceState{Peers: []devicePeer{{Key: live}}})
	sizes := map[string]int{"keys": len(w.keys), "warnedDup": len(w.warnedDup), "rehandshook": len(w.rehandshook),
		"clash": len(w.clash), "sent": len(w.sent), "confirmed": len(w.confirmed), "pending": len(w.pending)}
	for name, n := range sizes {
		if n != 1 {
			t.Errorf("%s holds %d keys after the reload, want 1 (the live peer's)", name, n)
		}
	}
	if _, ok := w.clash[live]; !ok {
		t.Error("the live peer's state was dropped")
	}
}
