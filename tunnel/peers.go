package tunnel

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// peer is one configured peer as the device holds it. During a rotation a
// peer has two keys: the active one and a staged successor. Both may
// handshake; the peer's addresses (and so its traffic) belong to whichever
// owns them, which is the successor once it has completed a handshake more
// recently than the active key.
type peer struct {
	name      string
	key       keys.PublicKey
	next      *keys.PublicKey
	owner     keys.PublicKey
	psk       *keys.PrivateKey
	hostport  string         // the configured endpoint, maybe a name
	endpoint  netip.AddrPort // resolved; invalid until known
	keepalive time.Duration
	allowed   []netip.Prefix
}

// deviceKeys are the keys the device knows this peer by.
func (p *peer) deviceKeys() []keys.PublicKey {
	if p.next != nil {
		return []keys.PublicKey{p.key, *p.next}
	}
	return []keys.PublicKey{p.key}
}

// newPeer builds a peer from its configuration: preshared key loaded,
// endpoint resolved if it can be (a name that does not resolve yet is
// retried by watchEndpoints).
func (g *Gateway) newPeer(ctx context.Context, c config.Peer) (*peer, error) {
	p := &peer{name: c.Name, key: c.Key, next: c.NextKey, owner: c.Key, hostport: c.Endpoint,
		keepalive: c.PersistentKeepalive, allowed: slices.Clone(c.AllowedIPs)}
	if c.PresharedKeyFile != "" {
		psk, err := keys.LoadPresharedKey(c.PresharedKeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: peer %q presharedKeyFile: %w", ErrBadConfig, c.Name, err)
		}
		p.psk = &psk
	}
	if c.Endpoint != "" {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		ep, err := resolveEndpoint(rctx, g.Resolver, c.Endpoint)
		cancel()
		if err != nil {
			g.log.Warn("peer endpoint does not resolve yet; will retry", "peer", c.Name, "endpoint", c.Endpoint, "err", err)
		} else {
			p.endpoint = ep
		}
	}
	return p, nil
}

// newPeers builds every peer c names.
func (g *Gateway) newPeers(ctx context.Context, c *config.Config) ([]*peer, error) {
	var out []*peer
	for _, pc := range c.Peers {
		p, err := g.newPeer(ctx, pc)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// peerList returns copies of the peers as they are now.
func (g *Gateway) peerList() []peer {
	g.peers.Lock()
	defer g.peers.Unlock()
	out := make([]peer, len(g.peers.list))
	for i, p := range g.peers.list {
		out[i] = *p
	}
	return out
}

// promoteSuccessors hands a peer's addresses to its staged successor key
// as soon as that key has completed a handshake more recently than the
// active one: the peer has switched keys, and its traffic now arrives
// under the new one. Until the configuration drops the old key, the old
// key may still handshake but carries nothing.
func (g *Gateway) promoteSuccessors() {
	g.peers.Lock()
	defer g.peers.Unlock()
	var pending bool
	for _, p := range g.peers.list {
		if p.next != nil && p.owner != *p.next {
			pending = true
		}
	}
	if !pending {
		return
	}
	st, err := g.deviceState()
	if err != nil {
		return
	}
	hs := map[keys.PublicKey]time.Time{}
	for _, dp := range st.Peers {
		hs[dp.Key] = dp.LastHandshake
	}
	for _, p := range g.peers.list {
		if p.next == nil || p.owner == *p.next {
			continue
		}
		nh, oh := hs[*p.next], hs[p.key]
		if nh.IsZero() || !nh.After(oh) {
			continue
		}
		var b strings.Builder
		prev := p.owner
		p.owner = *p.next
		writePeer(&b, p, prev, true)
		writePeer(&b, p, *p.next, true)
		if err := g.dev.IpcSet(b.String()); err != nil {
			p.owner = prev
			g.log.Warn("handing a peer's addresses to its new key", "peer", p.name, "err", err)
			continue
		}
		g.log.Info("peer switched to its new key", "peer", p.name, "new_key", p.next.Fingerprint(), "old_key", prev.Fingerprint())
	}
}

// watchSuccessors runs promoteSuccessors often while a rotation is staged.
func (g *Gateway) watchSuccessors(ctx context.Context) {
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.promoteSuccessors()
		}
	}
}
