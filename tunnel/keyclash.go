package tunnel

import (
	"log/slog"
	"time"
)

// One private key on two running gateways, seen from one of them. The
// peer answers each of them, but after a handshake WireGuard sends to the
// endpoint of whichever holder it heard last, so each holder's new session
// soon goes quiet: it renews (rejoin), the peer answers the handshake at
// once, and the new session goes quiet again. A restarted peer answers a
// renewal and then keeps talking; a lost link answers none. So a peer that
// answered clashRenewals renewals in a row, each followed by silence again,
// is reported loudly, at most once a minute: the far side's endpoint swing
// (failover.go) shows the same fault from there, but it can be too brief to
// sample when both holders carry traffic.
const clashRenewals = 3

// keyClash is what the health watcher remembers of one dialled peer's
// renewals.
type keyClash struct {
	last     time.Time // the previous renewal
	answered int       // renewals in a row that the peer answered
	warned   time.Time
}

// renewed notes a renewal of p's session at now, with st the device state
// just before it and bound the silence that led to it, and reports a
// likely shared key. Renewals count as in a row while each comes within
// two bounds of the one before: one answered renewal a day is a peer
// restarted now and then.
func (w *healthWatcher) renewed(log *slog.Logger, p peer, st deviceState, bound time.Duration, now time.Time) {
	c := w.clash[p.key]
	hs := lastHandshake(p, st)
	if !c.last.IsZero() && hs.After(c.last) && now.Sub(c.last) <= 2*bound+rehandshakeEvery {
		c.answered++
	} else {
		c.answered = 0
	}
	c.last = now
	if c.answered >= clashRenewals && now.Sub(c.warned) >= time.Minute {
		c.warned = now
		log.Error("ONE PRIVATE KEY IS PROBABLY RUNNING ON TWO GATEWAYS: peer "+p.name+" answers every renewed handshake, "+
			"then sends its replies elsewhere, so each new session goes quiet again (or the peer keeps restarting). "+
			"Give every gateway replica its own key.",
			"peer", p.name, "answered_renewals", c.answered)
	}
	w.clash[p.key] = c
}
