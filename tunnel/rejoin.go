package tunnel

import (
	"log/slog"
	"time"

	"golang.zx2c4.com/wireguard/device"
)

// Rejoining a restarted peer. A gateway that listens (the AKS side) knows
// no endpoint for its peers, so when it restarts it cannot start a
// handshake: its peers' packets name a session it no longer has, and it
// drops them. WireGuard on the dialling side carries on with that session,
// sending keepalives that nobody reads, until it has sent data unanswered
// for 15 s or the session is two minutes old. A gateway replica that
// carries no flow sends no data, so it could wait the full two minutes.
//
// So the dialling side expires the session of a peer it dials that has
// gone silent, and the next keepalive starts a handshake; while the peer
// stays silent this repeats every rehandshakeEvery (a 148-byte handshake
// initiation a second). "Silent" is the failover's bound, 2 × keepalive +
// 0.5 s, but only for a peer seen keeping alive at that cadence itself
// (steadyGaps gaps in a row of at most keepalive + healthMargin between
// its packets); a peer that keeps no keepalive of its own answers ours
// only every 10 s (WireGuard's passive keepalive), so for it the bound is
// passiveBound.
const (
	rehandshakeEvery = time.Second
	steadyGaps       = 3
	passiveBound     = device.KeepaliveTimeout + time.Second
)

// rehandshakeBound is how long a peer dialled with keepalive k may be
// silent before its session is renewed; steady says the peer has been
// seen sending every k.
func rehandshakeBound(k time.Duration, steady bool) time.Duration {
	if steady {
		return healthBound(k)
	}
	return max(healthBound(k), passiveBound+k)
}

// rejoin expires the sessions of dialled peers that have been silent past
// their bound, at most every rehandshakeEvery each.
func (g *Gateway) rejoin(log *slog.Logger, w *healthWatcher, peers []peer, now time.Time) {
	for _, p := range peers {
		if p.hostport == "" || p.keepalive <= 0 {
			continue
		}
		var last time.Time
		steady := false
		for _, k := range p.deviceKeys() {
			if h := w.keys[k]; h != nil && h.at.After(last) {
				last, steady = h.at, h.steady >= steadyGaps
			}
		}
		if last.IsZero() || now.Sub(last) <= rehandshakeBound(p.keepalive, steady) {
			continue
		}
		if now.Sub(w.rehandshook[p.key]) < rehandshakeEvery {
			continue
		}
		if w.rehandshook[p.key].IsZero() || now.Sub(w.rehandshook[p.key]) > 2*rehandshakeEvery {
			log.Info("peer silent; renewing its session so that a restarted peer rejoins at once",
				"peer", p.name, "silent_for", now.Sub(last).Round(time.Millisecond).String())
		}
		w.rehandshook[p.key] = now
		for _, k := range p.deviceKeys() {
			if dp := g.dev.LookupPeer(device.NoisePublicKey(k)); dp != nil {
				dp.ExpireCurrentKeypairs()
			}
		}
	}
}
