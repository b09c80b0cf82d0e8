package tunnel

import (
	"context"
	"log/slog"
	"time"

	"golang.zx2c4.com/wireguard/device"

	"github.com/tunnel-dev/tunnel/keys"
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

// Confirming a new session. The peer that answers a handshake may not
// send over the new session until the initiator has sent something over
// it: WireGuard's initiator sends one keepalive for that, and if that one
// datagram is lost, the responder holds its packets until its own
// handshake retry, 5 s or more later. A listening gateway whose first
// packet for a peer came before that peer's first initiation has already
// spent its own attempt (no endpoint to send it to), so a TCP connection
// opened through it waited those 5 s, longer than a short dial timeout.
// The health watcher therefore sends confirmKeepalives more keepalives,
// one a poll, after every handshake it sees completed: one lost datagram
// no longer stalls a new session.
const confirmKeepalives = 2

// confirm sends the keepalives that confirm new sessions.
func (g *Gateway) confirm(w *healthWatcher, st deviceState) {
	for _, dp := range st.Peers {
		if dp.LastHandshake.IsZero() {
			continue
		}
		c := w.confirmed[dp.Key]
		if !dp.LastHandshake.Equal(c.handshake) {
			c = sessionSeen{handshake: dp.LastHandshake, left: confirmKeepalives}
		}
		if c.left > 0 {
			if d := g.dev.LookupPeer(device.NoisePublicKey(dp.Key)); d != nil {
				d.SendKeepalive()
			}
			c.left--
		}
		w.confirmed[dp.Key] = c
	}
}

// First handshakes. WireGuard retries an unanswered initiation after 5 s,
// so one lost datagram (the initiation or its response) costs a new
// dialled peer 5 s, and a TCP connection opened through the far gateway
// meanwhile may time out dialling. The dialling side therefore initiates
// again itself firstRetryAfter, and again twice that later, after it first
// saw a peer with no handshake; then WireGuard's own retries take over. A
// retry drops the unanswered initiation, so on a link whose round trip is
// longer than a retry the second one (twice as long) or WireGuard's next
// completes it.
const firstRetryAfter = time.Second

// retryFirst initiates again to dialled peers that have had no handshake
// for firstRetryAfter, and once more 2 × firstRetryAfter after that.
func (g *Gateway) retryFirst(w *healthWatcher, peers []peer, st deviceState, now time.Time) {
	dialled := map[keys.PublicKey]bool{}
	for _, p := range peers {
		if p.hostport != "" {
			for _, k := range p.deviceKeys() {
				dialled[k] = true
			}
		}
	}
	for _, dp := range st.Peers {
		if !dialled[dp.Key] || !dp.LastHandshake.IsZero() || dp.Endpoint == "" {
			delete(w.pending, dp.Key)
			continue
		}
		f, ok := w.pending[dp.Key]
		if !ok {
			w.pending[dp.Key] = firstSeen{since: now}
			continue
		}
		if f.tries >= 2 || now.Sub(f.since) < firstRetryAfter<<f.tries {
			continue
		}
		if d := g.dev.LookupPeer(device.NoisePublicKey(dp.Key)); d != nil {
			// Expiring lifts WireGuard's 5 s between initiations; the
			// keepalive it then has no session for starts one.
			d.ExpireCurrentKeypairs()
			d.SendKeepalive()
		}
		w.pending[dp.Key] = firstSeen{since: now, tries: f.tries + 1}
	}
}

// forget drops what w remembers of peers that are gone, so a gateway
// reloaded many times holds state only for the peers it has: device keys
// st no longer has (a key rotated out, a peer removed), and configured
// keys no peer of peers has.
func (w *healthWatcher) forget(peers []peer, st deviceState) {
	live := make(map[keys.PublicKey]bool, len(st.Peers))
	for _, dp := range st.Peers {
		live[dp.Key] = true
	}
	keep(w.keys, live)
	keep(w.warnedDup, live)
	keep(w.confirmed, live)
	keep(w.pending, live)
	configured := make(map[keys.PublicKey]bool, len(peers))
	for _, p := range peers {
		configured[p.key] = true
	}
	keep(w.rehandshook, configured)
	keep(w.clash, configured)
	keep(w.sent, configured)
}

// keep deletes from m every key not in live.
func keep[V any](m map[keys.PublicKey]V, live map[keys.PublicKey]bool) {
	for k := range m {
		if !live[k] {
			delete(m, k)
		}
	}
}

// firstSeen is when a dialled peer with no handshake was first seen, or
// last initiated to by retryFirst, and how often that has happened.
type firstSeen struct {
	since time.Time
	tries int
}

// sessionSeen is the last handshake seen of one device peer and how many
// confirming keepalives it still gets.
type sessionSeen struct {
	handshake time.Time
	left      int
}

// sentSeen is when a peer's tx_bytes last changed (or a keepalive was
// sent to it).
type sentSeen struct {
	tx uint64
	at time.Time
}

// rejoin expires the sessions of dialled peers that have been silent past
// their bound, at most every rehandshakeEvery each.
func (g *Gateway) rejoin(log *slog.Logger, w *healthWatcher, peers []peer, st deviceState, now time.Time) {
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
		bound := rehandshakeBound(p.keepalive, steady)
		if last.IsZero() || now.Sub(last) <= bound {
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
		w.renewed(log, p, st, bound, now)
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
