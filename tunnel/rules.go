package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/tunnel-dev/tunnel/tunnel/config"
	"github.com/tunnel-dev/tunnel/tunnel/forward"
	"github.com/tunnel-dev/tunnel/tunnel/policy"
)

// Rule kinds.
const (
	kindExpose  = "expose"
	kindForward = "forward"
)

// rule is one running expose or forward rule: its listeners (one per tunnel
// address for expose rules) and their forwarders, sharing one Stats.
type rule struct {
	expose  config.Expose  // the rule's configuration, for reloads to compare
	forward config.Forward // (one of the two)

	name, kind, proto string
	from, to          string // for status: where flows come in, where they go
	stats             forward.Stats

	tcps    []*forward.TCP
	udps    []*forward.UDP
	closers []func() // listeners and filter entries
	wg      sync.WaitGroup
	failed  atomic.Pointer[error]
	stopped sync.Once
}

func (r *rule) err() error {
	if p := r.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (r *rule) stopAccepting() {
	r.stopped.Do(func() {
		for _, c := range r.closers {
			c()
		}
	})
}

func (r *rule) drain(ctx context.Context) {
	for _, t := range r.tcps {
		t.Shutdown(ctx)
	}
}

func (r *rule) wait() { r.wg.Wait() }

func (r *rule) serve(ctx context.Context, run func(context.Context) error) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := run(ctx); err != nil {
			e := fmt.Errorf("serving: %w", err)
			r.failed.Store(&e)
		}
	}()
}

// udpPayloadMax is the largest UDP payload that fits the tunnel MTU
// unfragmented, for the address family of a.
func udpPayloadMax(mtu int, a netip.Addr) int {
	if a.Unmap().Is4() {
		return mtu - 20 - 8
	}
	return mtu - 40 - 8
}

func (g *Gateway) startRules(ctx context.Context) error {
	c := g.conf()
	for _, e := range c.Expose {
		if err := g.addExpose(ctx, e); err != nil {
			return err
		}
	}
	for _, f := range c.Forward {
		if err := g.addForward(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// addExpose starts an expose rule and adds it to the running rules.
func (g *Gateway) addExpose(ctx context.Context, e config.Expose) error {
	r := &rule{name: e.Name, kind: kindExpose, proto: e.Protocol, to: e.Target, expose: e}
	if err := g.startExpose(ctx, r, e); err != nil {
		r.stopAccepting()
		r.wait()
		return fmt.Errorf("expose rule %q: %w", e.Name, err)
	}
	g.appendRule(r) // only once started: Status reads its fields
	return nil
}

// addForward starts a forward rule and adds it to the running rules.
func (g *Gateway) addForward(ctx context.Context, f config.Forward) error {
	r := &rule{name: f.Name, kind: kindForward, proto: f.Protocol, from: f.Listen, to: f.To.String(), forward: f}
	if err := g.startForward(ctx, r, f); err != nil {
		r.stopAccepting()
		r.wait()
		return fmt.Errorf("forward rule %q: %w", f.Name, err)
	}
	g.appendRule(r) // only once started: Status reads its fields
	return nil
}

func (g *Gateway) appendRule(r *rule) {
	g.rmu.Lock()
	defer g.rmu.Unlock()
	g.rules = append(slices.Clone(g.rules), r)
}

// removeRule stops a rule: no new flows, flows in flight get until ctx is
// done, then it is gone.
func (g *Gateway) removeRule(ctx context.Context, r *rule) {
	r.stopAccepting()
	r.drain(ctx)
	r.wait()
	g.rmu.Lock()
	defer g.rmu.Unlock()
	g.rules = slices.DeleteFunc(slices.Clone(g.rules), func(x *rule) bool { return x == r })
}

// startExpose listens on every tunnel address and dials the target in the
// gateway's own network for each flow. The target's name is resolved per
// flow, so a Service whose address changes is followed.
func (g *Gateway) startExpose(ctx context.Context, r *rule, e config.Expose) error {
	lim := g.conf().Limits
	var d net.Dialer
	for _, a := range g.conf().Interface.Addresses {
		at := netip.AddrPortFrom(a, e.Port)
		if r.from == "" {
			r.from = fmt.Sprintf("%s/%d", e.Protocol, e.Port)
		}
		switch e.Protocol {
		case config.TCP:
			ln, err := g.ns.ListenTCP(at)
			if err != nil {
				return err
			}
			r.closers = append(r.closers, func() { ln.Close() })
			t := &forward.TCP{
				Name: e.Name, Listener: ln,
				Dial:        func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", e.Target) },
				DialTimeout: lim.TCPDialTimeout, MaxConns: lim.TCPMaxConnections,
				Stats: &r.stats, Logger: g.log,
			}
			r.tcps = append(r.tcps, t)
			r.serve(ctx, t.Serve)
		case config.UDP:
			pc, err := g.listenUDP(at)
			if err != nil {
				return err
			}
			r.closers = append(r.closers, func() { pc.Close() })
			u := &forward.UDP{
				Name: e.Name, Conn: pc,
				Dial:        func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "udp", e.Target) },
				DialTimeout: lim.TCPDialTimeout, IdleTimeout: lim.UDPIdleTimeout, MaxSessions: lim.UDPMaxSessions,
				// Up: from the tunnel, already within its MTU. Down: replies
				// into the tunnel must fit it unfragmented.
				MaxUp: 65535, MaxDown: udpPayloadMax(g.conf().Interface.MTU, a),
				Stats: &r.stats, Logger: g.log,
			}
			r.udps = append(r.udps, u)
			r.serve(ctx, u.Serve)
		}
	}
	return nil
}

// startForward listens in the gateway's own network and dials the peer's
// tunnel address for each flow; replies from that address and port are let
// in by the filter.
func (g *Gateway) startForward(ctx context.Context, r *rule, f config.Forward) error {
	lim := g.conf().Limits
	remove := g.filter.AddRemote(policy.Remote{Proto: protoNumber(f.Protocol), Addr: f.To})
	r.closers = append(r.closers, remove)
	var lc net.ListenConfig
	switch f.Protocol {
	case config.TCP:
		ln, err := lc.Listen(ctx, "tcp", f.Listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", f.Listen, err)
		}
		r.from = "tcp/" + ln.Addr().String()
		r.closers = append(r.closers, func() { ln.Close() })
		t := &forward.TCP{
			Name: f.Name, Listener: ln,
			Dial:        func(ctx context.Context) (net.Conn, error) { return g.ns.DialTCP(ctx, f.To) },
			DialTimeout: lim.TCPDialTimeout, MaxConns: lim.TCPMaxConnections,
			Stats: &r.stats, Logger: g.log,
		}
		r.tcps = append(r.tcps, t)
		r.serve(ctx, t.Serve)
	case config.UDP:
		pc, err := lc.ListenPacket(ctx, "udp", f.Listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", f.Listen, err)
		}
		r.from = "udp/" + pc.LocalAddr().String()
		r.closers = append(r.closers, func() { pc.Close() })
		u := &forward.UDP{
			Name: f.Name, Conn: pc,
			Dial:        func(ctx context.Context) (net.Conn, error) { return g.dialUDP(f.To) },
			DialTimeout: lim.TCPDialTimeout, IdleTimeout: lim.UDPIdleTimeout, MaxSessions: lim.UDPMaxSessions,
			MaxUp: udpPayloadMax(g.conf().Interface.MTU, f.To.Addr()), MaxDown: 65535,
			Stats: &r.stats, Logger: g.log,
		}
		r.udps = append(r.udps, u)
		r.serve(ctx, u.Serve)
	}
	return nil
}

// ForwardAddr returns the local address a forward rule listens on (useful
// when the configuration asks for port 0).
func (g *Gateway) ForwardAddr(name string) (netip.AddrPort, bool) {
	for _, r := range g.ruleList() {
		if r.kind == kindForward && r.name == name {
			_, addr, _ := cutProto(r.from)
			ap, err := netip.ParseAddrPort(addr)
			return ap, err == nil
		}
	}
	return netip.AddrPort{}, false
}

func cutProto(s string) (proto, addr string, ok bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '/' {
			return s[:i], s[i+1:], true
		}
	}
	return "", s, false
}

// listenUDP and dialUDP open tunnel-side UDP sockets: on the fast path
// unless the tuning turns it off.
func (g *Gateway) listenUDP(at netip.AddrPort) (net.PacketConn, error) {
	if g.Tuning.NoFastUDP {
		return g.ns.ListenUDP(at)
	}
	return g.ns.ListenUDPFast(at)
}

func (g *Gateway) dialUDP(to netip.AddrPort) (net.Conn, error) {
	if g.Tuning.NoFastUDP {
		return g.ns.DialUDP(to)
	}
	return g.ns.DialUDPFast(to)
}
