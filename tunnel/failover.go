package tunnel

import (
	"cmp"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// How upstream health is judged. A peer is healthy while something from it
// has arrived recently: WireGuard counts every received byte, keepalives
// and handshakes included, in the peer's rx_bytes, which the device
// reports on every "get". With persistentKeepalive k on both sides, a live
// peer is heard from at least every k, so silence for longer than
// 2k + healthMargin means two keepalives in a row were missed. With the 1s
// keepalive an HA pair uses, that is 2.5 s, and the poll adds at most
// healthPoll: a failover within 2.75 s of the last packet from the peer.
//
// A peer with no keepalive may be silent for as long as nothing flows, so
// silence proves nothing; it counts as healthy while its last handshake is
// younger than WireGuard's reject-after time, after which the session
// cannot carry data without a new one.
const (
	healthPoll   = 250 * time.Millisecond
	healthMargin = 500 * time.Millisecond
	rejectAfter  = 180 * time.Second
)

// Reasons an upstream is unhealthy, as the failover metric and log name
// them, and the reason a rule goes back to a preferred upstream.
const (
	reasonNoHandshake     = "no_handshake"
	reasonKeepaliveMissed = "keepalive_missed"
	reasonRecovered       = "recovered"
)

// healthBound is how long a peer with keepalive k may be silent and still
// count as healthy.
func healthBound(k time.Duration) time.Duration {
	if k <= 0 {
		return rejectAfter
	}
	return 2*k + healthMargin
}

// peerHealth is one configured peer's health at one poll.
type peerHealth struct {
	healthy bool
	reason  string        // why not, when not
	silent  time.Duration // since the peer was last heard from
}

// heard is what the health watcher remembers of one device peer (one key).
type heard struct {
	rx   uint64
	at   time.Time // when rx last grew, or the handshake that began it
	ends []endpointSeen
	// steady counts the gaps in a row between packets within the peer's
	// health bound (rejoin.go).
	steady int
}

// endpointSeen is one change of a key's endpoint.
type endpointSeen struct {
	endpoint string
	at       time.Time
}

// healthWatcher polls the device and judges each peer; it is only touched
// by watchHealth's goroutine.
type healthWatcher struct {
	keys        map[keys.PublicKey]*heard
	warnedDup   map[keys.PublicKey]time.Time
	rehandshook map[keys.PublicKey]time.Time   // by configured key (rejoin.go)
	clash       map[keys.PublicKey]keyClash    // by configured key (keyclash.go)
	sent        map[keys.PublicKey]sentSeen    // by configured key (rejoin.go)
	confirmed   map[keys.PublicKey]sessionSeen // by device key (rejoin.go)
	pending     map[keys.PublicKey]firstSeen   // by device key (rejoin.go)
}

func newHealthWatcher() *healthWatcher {
	return &healthWatcher{keys: map[keys.PublicKey]*heard{}, warnedDup: map[keys.PublicKey]time.Time{}, rehandshook: map[keys.PublicKey]time.Time{}, clash: map[keys.PublicKey]keyClash{}, sent: map[keys.PublicKey]sentSeen{}, confirmed: map[keys.PublicKey]sessionSeen{}, pending: map[keys.PublicKey]firstSeen{}}
}

// watchHealth polls the device every healthPoll, judges every peer, and
// moves forward rules with several upstreams off the unhealthy ones.
func (g *Gateway) watchHealth(ctx context.Context) {
	w := newHealthWatcher()
	t := time.NewTicker(healthPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			st, err := g.deviceState()
			if err != nil {
				continue
			}
			peers := g.peerList()
			w.forget(peers, st)
			health := w.judge(g.log, peers, st, now)
			g.confirm(w, st)
			g.retryFirst(w, peers, st, now)
			g.keepAlive(w, peers, st, now)
			g.rejoin(g.log, w, peers, st, now)
			for _, r := range g.ruleList() {
				if f, ok := r.(*forwardRule); ok && len(f.ups.list) > 1 {
					f.ups.update(g.log, health)
					f.retarget(ctx, g.log)
				}
			}
		}
	}
}

// judge updates what w has heard from each device peer and returns every
// configured peer's health by name.
func (w *healthWatcher) judge(log *slog.Logger, peers []peer, st deviceState, now time.Time) map[string]peerHealth {
	keepalive := map[keys.PublicKey]time.Duration{}
	for _, p := range peers {
		for _, k := range p.deviceKeys() {
			keepalive[k] = p.keepalive
		}
	}
	for _, dp := range st.Peers {
		h := w.keys[dp.Key]
		if h == nil {
			// First sight: the handshake is the last moment known to have
			// brought something from the peer.
			// Presume it keeps alive, as its configuration here says,
			// until a longer gap shows otherwise.
			h = &heard{rx: dp.RxBytes, at: dp.LastHandshake, steady: steadyGaps}
			w.keys[dp.Key] = h
		}

		if dp.RxBytes != h.rx {
			if k := keepalive[dp.Key]; k > 0 && now.Sub(h.at) <= healthBound(k) {
				h.steady++
			} else {
				h.steady = 0
			}
			h.rx, h.at = dp.RxBytes, now
		}
		w.endpoint(log, peers, dp, h, now)
	}
	out := make(map[string]peerHealth, len(peers))
	for _, p := range peers {
		var last, hs time.Time
		for _, k := range p.deviceKeys() {
			if h := w.keys[k]; h != nil && h.at.After(last) {
				last = h.at
			}
		}
		hs = lastHandshake(p, st)
		ph := peerHealth{healthy: true}
		switch bound := healthBound(p.keepalive); {
		case hs.IsZero() || now.Sub(hs) > rejectAfter:
			ph = peerHealth{reason: reasonNoHandshake}
			if !last.IsZero() {
				ph.silent = now.Sub(last)
			}
		case now.Sub(last) > bound:
			ph = peerHealth{reason: reasonKeepaliveMissed, silent: now.Sub(last)}
		}
		out[p.name] = ph
	}
	return out
}

// lastHandshake is the latest handshake of any of p's device keys (two
// while a key is being rotated).
func lastHandshake(p peer, st deviceState) time.Time {
	var hs time.Time
	for _, dp := range st.Peers {
		if slices.Contains(p.deviceKeys(), dp.Key) && dp.LastHandshake.After(hs) {
			hs = dp.LastHandshake
		}
	}
	return hs
}

// dupWindow is how long a key's endpoints are remembered: WireGuard's
// reject-after time, by which a gateway left out has handshaken again even
// when idle (15 s on when it is sending). A key whose endpoint comes back
// to one it had left within it (A, B, then A again) is held by two running
// gateways: a roam (a NAT rebinding, a restarted pod) moves on and does
// not come back.
const dupWindow = 3 * time.Minute

// endpoint notes a change of a device peer's endpoint and logs, loudly and
// at most once a minute, a key seen at two endpoints in turn: WireGuard
// follows the source of the latest authenticated packet or handshake, so
// two gateways with one private key make their peer's endpoint swing
// between them, every packet or every handshake. Each keeps breaking the
// other's sessions; the fix is a key per gateway.
func (w *healthWatcher) endpoint(log *slog.Logger, peers []peer, dp devicePeer, h *heard, now time.Time) {
	if dp.Endpoint == "" || (len(h.ends) > 0 && h.ends[len(h.ends)-1].endpoint == dp.Endpoint) {
		return
	}
	h.ends = slices.DeleteFunc(h.ends, func(e endpointSeen) bool { return now.Sub(e.at) > dupWindow })
	back := slices.ContainsFunc(h.ends, func(e endpointSeen) bool { return e.endpoint == dp.Endpoint })
	h.ends = append(h.ends, endpointSeen{dp.Endpoint, now})
	if len(h.ends) > 16 {
		h.ends = h.ends[len(h.ends)-16:]
	}
	if !back || now.Sub(w.warnedDup[dp.Key]) < time.Minute {
		return
	}
	w.warnedDup[dp.Key] = now
	name := "an unknown peer"
	for _, p := range peers {
		if slices.Contains(p.deviceKeys(), dp.Key) {
			name = "peer " + p.name
		}
	}
	var at []string
	for _, e := range h.ends {
		if !slices.Contains(at, e.endpoint) {
			at = append(at, e.endpoint)
		}
	}
	log.Error("ONE PRIVATE KEY IS RUNNING ON TWO GATEWAYS: "+name+"'s key answers from several endpoints in turn; "+
		"each keeps breaking the other's sessions. Give every gateway replica its own key.",
		"peer_key", dp.Key.Fingerprint(), "endpoints", at, "within", dupWindow.String())
}

// upstreams is a forward rule's upstreams and the one new flows use, with
// the failovers between them.
type upstreams struct {
	rule string
	list []config.Upstream

	mu        sync.Mutex
	cur       int // index into list: where new flows go
	health    []peerHealth
	failovers map[failover]uint64
}

// failover is one move of a rule's new flows from one upstream to another.
type failover struct{ from, to, reason string }

func newUpstreams(rule string, list []config.Upstream) *upstreams {
	h := make([]peerHealth, len(list))
	for i := range h {
		h[i] = peerHealth{reason: reasonNoHandshake}
	}
	return &upstreams{rule: rule, list: list, health: h, failovers: map[failover]uint64{}}
}

// current is the upstream new flows use.
func (u *upstreams) current() config.Upstream {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.list[u.cur]
}

// update takes the peers' health and moves new flows to the first healthy
// upstream. When none is healthy, flows stay where they are: sending is
// what makes WireGuard try a handshake, and there is nowhere better.
func (u *upstreams) update(log *slog.Logger, health map[string]peerHealth) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for i, up := range u.list {
		u.health[i] = health[up.Peer]
	}
	next := slices.IndexFunc(u.health, func(h peerHealth) bool { return h.healthy })
	if next < 0 || next == u.cur {
		return
	}
	from, to, was := u.list[u.cur], u.list[next], u.health[u.cur]
	reason := was.reason
	if was.healthy {
		reason = reasonRecovered // a preferred upstream is back
	}
	u.failovers[failover{upstreamID(from), upstreamID(to), reason}]++
	u.cur = next
	args := []any{"rule", u.rule, "from", from.String(), "to", to.String(), "reason", reason}
	if !was.healthy && was.silent > 0 {
		args = append(args, "silent_for", was.silent.Round(time.Millisecond).String())
	}
	log.Warn("rule failed over to another upstream", args...)
}

// upstreamID names an upstream in metric labels: peer/address:port.
func upstreamID(u config.Upstream) string { return u.Peer + "/" + u.To.String() }

// movedFrom reports whether a flow to the tunnel address to should move:
// its upstream is unhealthy and the current one, where it would go, is
// healthy.
func (u *upstreams) movedFrom(to netip.AddrPort) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.list[u.cur].To == to || !u.health[u.cur].healthy {
		return false
	}
	i := slices.IndexFunc(u.list, func(up config.Upstream) bool { return up.To == to })
	return i >= 0 && !u.health[i].healthy
}

// status reports the upstreams for RuleStatus.
func (u *upstreams) status() (string, []UpstreamStatus, []FailoverStatus) {
	u.mu.Lock()
	defer u.mu.Unlock()
	ups := make([]UpstreamStatus, len(u.list))
	for i, up := range u.list {
		h := u.health[i]
		ups[i] = UpstreamStatus{Peer: up.Peer, To: up.To, Healthy: h.healthy, Reason: h.reason, InUse: i == u.cur}
		if h.silent > 0 {
			ups[i].SilentFor = h.silent
		}
	}
	var fs []FailoverStatus
	for f, n := range u.failovers {
		fs = append(fs, FailoverStatus{From: f.from, To: f.to, Reason: f.reason, Count: n})
	}
	slices.SortFunc(fs, func(a, b FailoverStatus) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To), cmp.Compare(a.Reason, b.Reason))
	})
	return u.list[u.cur].String(), ups, fs
}

// retarget moves the rule's UDP sessions off upstreams that are no longer
// healthy, to the one new flows use. A TCP connection cannot change its
// far end: one to an unhealthy upstream is closed, so that its client
// reconnects (to the current upstream) at once instead of waiting out
// TCP's own timeouts.
func (r *forwardRule) retarget(ctx context.Context, log *slog.Logger) {
	stale := func(c net.Conn) bool {
		ap, ok := remoteAddrPort(c)
		return ok && r.ups.movedFrom(ap)
	}
	for _, u := range r.udps {
		if n := u.Retarget(ctx, stale); n > 0 {
			log.Info("moved UDP sessions to the rule's current upstream", "rule", r.name, "sessions", n, "to", r.ups.current().String())
		}
	}
	for _, t := range r.tcps {
		if n := t.CloseWhere(stale); n > 0 {
			log.Info("closed TCP connections to an unhealthy upstream; their clients reconnect", "rule", r.name, "connections", n)
		}
	}
}

func remoteAddrPort(c net.Conn) (netip.AddrPort, bool) {
	if c.RemoteAddr() == nil {
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}
