package tunnel

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/ratelog"
	"github.com/tunnel-dev/tunnel/keys"
)

// What the gateway tells about authentication, besides the counters
// wireguard-go's refusals feed (wglog.go): a peer's first handshake, a
// peer gone silent, a peer back, and handshakes from keys it does not
// know. Each is logged once per change and counted in
// tunnel_auth_events_total{event}.
//
// A peer is silent when its last completed handshake is older than
// silentAfter. WireGuard renews a session every two minutes while
// anything flows (a persistent keepalive is enough) and refuses to use
// one older than three minutes (RejectAfterTime), so a peer with no
// handshake for three minutes and a margin has no session at all: it is
// down, its key changed, or nothing has flowed and neither side sends
// keepalives. A peer that never completed a handshake is reported silent
// once silentAfter has passed since the gateway started, and counted back
// at its first handshake: silent minus back is the peers silent now.
const (
	defaultSilentAfter   = 3*time.Minute + 15*time.Second
	defaultPeerWatchTick = time.Second
	// unknownKeyLogEvery bounds the lines logged for handshakes from
	// unknown keys: one per source address per interval, with the count
	// of those left out.
	unknownKeyLogEvery = 10 * time.Second
)

// authEvent names a tunnel_auth_events_total series.
type authEvent int

const (
	authFirstHandshake authEvent = iota // a peer completed its first handshake since start
	authSilent                          // a peer has had no handshake for longer than the bound
	authBack                            // a silent peer completed a handshake again
	authUnknownKey                      // a handshake from a key that is not a peer's (or sent for another key)
	numAuthEvents
)

func (e authEvent) String() string {
	return [...]string{"first_handshake", "silent", "back", "unknown_key"}[e]
}

// authEvents counts and logs authentication events. Its counters are
// atomic; the limiter and strangers have their own locks.
type authEvents struct {
	counts  [numAuthEvents]atomic.Uint64
	unknown ratelog.Limiter
	log     atomic.Pointer[slog.Logger]
	// strangers reads the keys of refused initiations (strangers.go).
	strangers strangers
	// known reports whether the device has a peer with this key (nil: no
	// device, as in tests of the counters alone). Set before the device
	// receives anything.
	known func(keys.PublicKey) bool
}

func (a *authEvents) logger() *slog.Logger {
	if l := a.log.Load(); l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// unknownKey records a handshake wireguard-go refused. source is the UDP
// address it came from, or "" when wireguard-go does not say (a message
// whose MAC1 is not for this gateway's key is dropped before its source
// is logged). The key that sent it is read from the copy of the
// initiation the bind kept (strangers.go), when it can be.
func (a *authEvents) unknownKey(source string) {
	var key keys.PublicKey
	read := false
	if source != "" {
		key, read = a.strangers.identify(source, time.Now())
	}
	if read && a.known != nil && a.known(key) {
		// A configured peer's initiation refused as a replay or as sent
		// too soon after its last: not an unknown key.
		a.logger().Debug("WireGuard refused a peer's handshake initiation (a replay, or too soon after the last)",
			"source", source, "key", key.String())
		return
	}
	a.counts[authUnknownKey].Add(1)
	a.strangers.count(key, read)
	if a.unknown.Every == 0 {
		return
	}
	ok, suppressed := a.unknown.Allow(source, time.Now())
	if !ok {
		return
	}
	log := a.logger()
	if read {
		log.Warn("refused a WireGuard handshake from a key that is not a configured peer's",
			"key", key.String(), "source", source, "suppressed", suppressed, "every", unknownKeyLogEvery.String(),
			"hint", "if this is a peer whose key changed, put this public key in this gateway's config; a stranger is refused as intended")
		return
	}
	if source == "" {
		source = "unknown (sent for another key)"
	}
	log.Warn("refused a WireGuard handshake: the key is not a configured peer's, or the message was for another key",
		"source", source, "suppressed", suppressed, "every", unknownKeyLogEvery.String(),
		"hint", "a peer whose key changed needs the new public key in this gateway's config; a stranger is refused as intended")
}

// peerSeen is what the watcher last knew of one configured peer.
type peerSeen struct {
	handshake time.Time // latest completed handshake over the peer's keys
	reported  bool      // a first handshake was logged
	silent    bool      // reported silent, not yet back
}

// watchPeers polls the device and logs each peer's first handshake,
// silence and return. It runs until ctx is done.
func (g *Gateway) watchPeers(ctx context.Context) {
	every, bound := g.peerWatchEvery, g.silentAfter
	if every <= 0 {
		every = defaultPeerWatchTick
	}
	if bound <= 0 {
		bound = defaultSilentAfter
	}
	seen := map[string]*peerSeen{}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.checkPeers(seen, bound, time.Now())
		}
	}
}

// checkPeers compares the device's handshakes with seen and logs what
// changed.
func (g *Gateway) checkPeers(seen map[string]*peerSeen, bound time.Duration, now time.Time) {
	st, err := g.deviceState()
	if err != nil {
		return
	}
	peers := g.peerList()
	names := make([]string, 0, len(peers))
	for _, p := range peers {
		names = append(names, p.name)
		s := seen[p.name]
		if s == nil {
			s = &peerSeen{}
			seen[p.name] = s
		}
		latest, endpoint := p.handshake(st)
		fresh := latest.After(s.handshake)
		s.handshake = latest
		log := g.log.With("peer", p.name, "key", p.owner.Fingerprint())
		switch {
		case fresh && !s.reported:
			if s.silent {
				// Reported silent before its first handshake: back too,
				// so that silent minus back counts the peers silent now.
				g.auth.counts[authBack].Add(1)
			}
			s.reported, s.silent = true, false
			g.auth.counts[authFirstHandshake].Add(1)
			log.Info(fmt.Sprintf("peer %s handshake complete, endpoint %s", p.name, endpoint), "endpoint", endpoint)
		case fresh && s.silent:
			s.silent = false
			g.auth.counts[authBack].Add(1)
			log.Info(fmt.Sprintf("peer %s back, endpoint %s", p.name, endpoint), "endpoint", endpoint)
		case !s.silent && !fresh && now.Sub(since(latest, g.started)) > bound:
			s.silent = true
			g.auth.counts[authSilent].Add(1)
			if latest.IsZero() {
				log.Warn(fmt.Sprintf("peer %s has not completed a handshake since the gateway started", p.name),
					"for", now.Sub(g.started).Round(time.Second).String(), "endpoint", p.hostport,
					"hint", "check that the peer is running, that its config has this gateway's public key, and that UDP reaches "+orListening(p.hostport))
			} else {
				log.Warn(fmt.Sprintf("peer %s silent: no handshake for longer than %s", p.name, bound),
					"last_handshake", latest.UTC().Format(time.RFC3339), "endpoint", endpoint,
					"hint", "the peer is down or unreachable, its key changed, or nothing flows and neither side sends keepalives")
			}
		}
	}
	for name := range seen { // peers removed by a reload
		if !slices.Contains(names, name) {
			delete(seen, name)
		}
	}
}

// handshake is the peer's latest completed handshake over its keys (zero
// if none) and the endpoint of its active key, as st reports them.
func (p *peer) handshake(st deviceState) (latest time.Time, endpoint string) {
	for _, dp := range st.Peers {
		if !slices.Contains(p.deviceKeys(), dp.Key) {
			continue
		}
		if dp.LastHandshake.After(latest) {
			latest = dp.LastHandshake
		}
		if dp.Key == p.owner {
			endpoint = dp.Endpoint
		}
	}
	return latest, endpoint
}

// since is t, or start when t is zero (no handshake yet).
func since(t, start time.Time) time.Time {
	if t.IsZero() {
		return start
	}
	return t
}

func orListening(hostport string) string {
	if hostport != "" {
		return hostport
	}
	return "this gateway's listening port"
}

// authCollector serves tunnel_auth_events_total, every event's series
// from start, and tunnel_unknown_key_handshakes_total by key.
type authCollector struct {
	a     *authEvents
	desc  *prometheus.Desc
	byKey *prometheus.Desc
}

func (g *Gateway) registerAuthMetrics() {
	c := &authCollector{a: &g.auth,
		desc: prometheus.NewDesc("tunnel_auth_events_total",
			"Authentication events, by event: first_handshake (a peer's first since start), silent (no handshake for longer than the bound), back (a silent peer returned), unknown_key (a handshake from a key that is not a peer's).",
			[]string{"event"}, nil),
		byKey: prometheus.NewDesc("tunnel_unknown_key_handshakes_total",
			fmt.Sprintf("Refused handshakes from keys that are not a peer's (the unknown_key events), by the initiator's public key read from the message: base64, or unread (sent for another key, not decryptable, or past the decryption budget), or other (past the first %d keys).", maxStrangerKeys),
			[]string{"key"}, nil),
	}
	// A registry shared by two gateways (tests) keeps the first.
	_ = g.Registry.Register(c)
}

func (c *authCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc; ch <- c.byKey }

func (c *authCollector) Collect(ch chan<- prometheus.Metric) {
	for e := range numAuthEvents {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(c.a.counts[e].Load()), e.String())
	}
	for k, n := range c.a.strangers.counts() {
		ch <- prometheus.MustNewConstMetric(c.byKey, prometheus.CounterValue, float64(n), k)
	}
}
