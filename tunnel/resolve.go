package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Endpoint re-resolution. A peer's endpoint may be a load balancer's DNS
// name whose addresses change; WireGuard itself resolves once. The gateway
// re-resolves a name when the peer has no endpoint yet, or when its last
// handshake is older than staleHandshake (WireGuard rekeys every two
// minutes while traffic flows, and keepalives keep traffic flowing), and
// applies a changed address without touching anything else.
const (
	defaultStaleHandshake = 3 * time.Minute
	defaultResolveEvery   = 15 * time.Second
)

func resolveEndpoint(ctx context.Context, r *net.Resolver, hostport string) (netip.AddrPort, error) {
	host, portStr, err := net.SplitHostPort(hostport)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port %q", portStr)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: %w", host, err)
	}
	if len(addrs) == 0 {
		return netip.AddrPort{}, fmt.Errorf("resolving %s: no addresses", host)
	}
	// Prefer IPv4: the usual cloud load balancer address, and what a
	// dual-stack node reaches without surprises.
	best := addrs[0]
	for _, a := range addrs {
		if a.Unmap().Is4() {
			best = a
			break
		}
	}
	return netip.AddrPortFrom(best.Unmap(), uint16(port)), nil
}

func isLiteral(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return false
	}
	_, err = netip.ParseAddr(host)
	return err == nil
}

// watchEndpoints re-resolves peers' endpoint names until ctx is done.
func (g *Gateway) watchEndpoints(ctx context.Context) {
	every := g.resolveEvery
	if every <= 0 {
		every = defaultResolveEvery
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		st, err := g.deviceState()
		if err != nil {
			continue
		}
		for _, p := range g.peerList() {
			if p.hostport != "" && !isLiteral(p.hostport) {
				g.refreshEndpoint(ctx, p, st)
			}
		}
	}
}

// refreshEndpoint re-resolves one peer's endpoint name (p is a copy).
func (g *Gateway) refreshEndpoint(ctx context.Context, p peer, st deviceState) {
	var cur devicePeer
	for _, dp := range st.Peers {
		if dp.Key == p.owner {
			cur = dp
		}
	}
	stale := g.staleHandshake
	if stale <= 0 {
		stale = defaultStaleHandshake
	}
	fresh := !cur.LastHandshake.IsZero() && time.Since(cur.LastHandshake) < stale
	if cur.Endpoint != "" && fresh {
		return
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	ep, err := resolveEndpoint(rctx, g.Resolver, p.hostport)
	cancel()
	if err != nil {
		g.log.Debug("peer endpoint still does not resolve", "peer", p.name, "endpoint", p.hostport, "err", err)
		return
	}
	if cur.Endpoint == ep.String() {
		return
	}
	g.peers.Lock()
	defer g.peers.Unlock()
	var live *peer
	for _, q := range g.peers.list {
		if q.name == p.name {
			live = q
		}
	}
	if live == nil || live.hostport != p.hostport {
		return // reloaded meanwhile
	}
	live.endpoint = ep
	var b strings.Builder
	for _, k := range live.deviceKeys() {
		b.WriteString(uapiEndpoint(k, ep))
	}
	if err := g.dev.IpcSet(b.String()); err != nil {
		g.log.Warn("updating peer endpoint", "peer", p.name, "err", err)
		return
	}
	g.log.Info("peer endpoint re-resolved", "peer", p.name, "endpoint", p.hostport, "old", cur.Endpoint, "new", ep.String())
}

func (g *Gateway) deviceState() (deviceState, error) {
	if g.dev == nil {
		return deviceState{}, ErrNotRunning
	}
	s, err := g.dev.IpcGet()
	if err != nil {
		return deviceState{}, fmt.Errorf("reading device state: %w", err)
	}
	return parseUAPIGet(s)
}
