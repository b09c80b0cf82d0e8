package tunnel

import (
	"context"
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
// Two things make that quick. First, keepalives both ways: WireGuard's
// persistent keepalive is sent only when nothing has crossed in either
// direction for the interval, so of two idle peers with the same interval
// the one whose timer fires first keeps the other quiet for good; the
// quiet one is never heard, and its silence proves nothing. The health
// watcher therefore also sends a peer's keepalive itself when nothing has
// been sent to it for its interval (keepAlive), so that every live peer
// is heard from every keepalive.
//
// Second, the dialling side expires the session of a peer it dials that has
// gone silent, and the next keepalive starts a handshake; while the peer
// stays silent this repeats every rehandshakeEvery (a 148-byte handshake
// initiation a second). "Silent" is the failover's bound, 2 × keepalive +
// 0.5 s, but only for a peer seen keeping alive itself (steadyGaps gaps
// in a row within that bound between its packets); a peer that keeps no
// keepalive of its own may say nothing for as long as it has nothing to
// send, so for it the bound is passiveBound.
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

// keepAlive sends a keepalive to every handshaken peer with a
// persistentKeepalive to which nothing has been sent for that long.
func (g *Gateway) keepAlive(w *healthWatcher, peers []peer, st deviceState, now time.Time) {
	for _, p := range peers {
		if p.keepalive <= 0 {
			continue
		}
		for _, dp := range st.Peers {
			if dp.Key != p.key || dp.LastHandshake.IsZero() {
				continue
			}
			s := w.sent[p.key]
			if s.tx != dp.TxBytes || s.at.IsZero() {
				w.sent[p.key] = sentSeen{dp.TxBytes, now}
				continue
			}
			if now.Sub(s.at) < p.keepalive-healthPoll/2 {
				continue
			}
			w.sent[p.key] = sentSeen{dp.TxBytes, now}
			if d := g.dev.LookupPeer(device.NoisePublicKey(p.key)); d != nil {
				d.SendKeepalive()
			}
		}
	}
}

// sentSeen is when a peer's tx_bytes last changed (or a keepalive was
// sent to it).
type sentSeen struct {
	tx uint64
	at time.Time
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
			log.Log(context.Background(), level(steady), "peer silent; renewing its session so that a restarted peer rejoins at once",
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

// level logs a renewal at info for a peer known to keep alive (its silence
// means something), at debug for one that may just be idle.
func level(steady bool) slog.Level {
	if steady {
		return slog.LevelInfo
	}
	return slog.LevelDebug
}
