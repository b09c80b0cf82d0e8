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

// Rule kinds, as Status and the metrics name them.
const (
	kindExpose  = "expose"
	kindForward = "forward"
)

// rule is one expose or forward rule. configuredRules makes them from a
// configuration; startRule starts one and adds it to the running rules.
type rule interface {
	// base is what every rule has: its identity, listeners, forwarders
	// and counters.
	base() *ruleBase
	// start opens the rule's listeners and starts its forwarders under
	// ctx. On error the caller stops what it opened.
	start(ctx context.Context, g *Gateway) error
	// status reports the rule; denied counts, by rule name, packets the
	// policy refused because their peer is not on the rule.
	status(denied map[string]uint64) RuleStatus
}

// exposeRule listens on every tunnel address and dials a target in the
// gateway's own network for each flow.
type exposeRule struct {
	ruleBase
	cfg config.Expose
}

// forwardRule listens in the gateway's own network and dials a peer's
// tunnel address for each flow.
type forwardRule struct {
	ruleBase
	cfg  config.Forward
	ups  *upstreams     // where flows go; more than one fail over in order
	addr netip.AddrPort // where it listens, once started
}

// ruleBase is the state expose and forward rules share: their listeners
// (one per tunnel address for expose rules) and forwarders, sharing one
// Stats.
type ruleBase struct {
	// id identifies the rule with its whole configuration: a changed rule
	// is a different rule, which Reload replaces.
	id                string
	kind, name, proto string
	from, to          string // for status: where flows come in, where they go
	stats             forward.Stats

	tcps    []*forward.TCP
	udps    []*forward.UDP
	closers []func() // listeners and filter entries
	wg      sync.WaitGroup
	failed  atomic.Pointer[error]
	stopped sync.Once
}

// configuredRules are the rules c names, expose rules first, not started.
func configuredRules(c *config.Config) []rule {
	var rules []rule
	for _, e := range c.Expose {
		r := &exposeRule{cfg: e}
		r.init(kindExpose, e.Name, e.Protocol, e)
		r.from, r.to = fmt.Sprintf("%s/%d", e.Protocol, e.Port), e.Target
		rules = append(rules, r)
	}
	for _, f := range c.Forward {
		r := &forwardRule{cfg: f, ups: newUpstreams(f.Name, f.Targets())}
		r.init(kindForward, f.Name, f.Protocol, f)
		r.from, r.to = f.Listen, f.To.String()
		rules = append(rules, r)
	}
	return rules
}

// init names the rule; cfg is its configuration, which its identity
// includes.
func (b *ruleBase) init(kind, name, proto string, cfg any) {
	b.kind, b.name, b.proto = kind, name, proto
	b.id = fmt.Sprintf("%s/%s %+v", kind, name, cfg)
}

func (b *ruleBase) base() *ruleBase { return b }

// report is the status every rule gives.
func (b *ruleBase) report() RuleStatus {
	rs := RuleStatus{Name: b.name, Kind: b.kind, Protocol: b.proto, From: b.from, To: b.to, Snapshot: b.stats.Snapshot()}
	if err := b.err(); err != nil {
		rs.Error = err.Error()
	}
	return rs
}

func (r *exposeRule) status(denied map[string]uint64) RuleStatus {
	rs := r.report()
	rs.Denied = denied[r.name]
	return rs
}

func (r *forwardRule) status(map[string]uint64) RuleStatus {
	rs := r.report()
	if len(r.ups.list) > 1 {
		rs.Upstream, rs.Upstreams, rs.Failovers = r.ups.status()
		rs.To = r.ups.current().To.String()
	}
	return rs
}

func (b *ruleBase) err() error {
	if p := b.failed.Load(); p != nil {
		return *p
	}
	return nil
}

func (b *ruleBase) stopAccepting() {
	b.stopped.Do(func() {
		for _, c := range b.closers {
			c()
		}
	})
}

func (b *ruleBase) drain(ctx context.Context) {
	for _, t := range b.tcps {
		t.Shutdown(ctx)
	}
}

func (b *ruleBase) wait() { b.wg.Wait() }

func (b *ruleBase) serve(ctx context.Context, run func(context.Context) error) {
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		if err := run(ctx); err != nil {
			e := fmt.Errorf("serving: %w", err)
			b.failed.Store(&e)
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

// udpFromTunnelMax is the largest datagram a socket on the netstack can
// be handed: the fast path drops fragments, so nothing beyond the MTU;
// gVisor's UDP layer reassembles them. Each UDP session holds a buffer of
// this size for its replies.
func (g *Gateway) udpFromTunnelMax(mtu int, a netip.Addr) int {
	if g.Tuning.NoFastUDP {
		return 65535
	}
	return udpPayloadMax(mtu, a)
}

// startRule starts r and adds it to the running rules. On error nothing
// of r is left running.
func (g *Gateway) startRule(ctx context.Context, r rule) error {
	b := r.base()
	if err := r.start(ctx, g); err != nil {
		b.stopAccepting()
		b.wait()
		return fmt.Errorf("%s rule %q: %w", b.kind, b.name, err)
	}
	g.rules.Lock()
	defer g.rules.Unlock()
	g.rules.list = append(slices.Clone(g.rules.list), r) // only once started: Status reads its fields
	return nil
}

// removeRule stops a rule: no new flows, flows in flight get until ctx is
// done, then it is gone.
func (g *Gateway) removeRule(ctx context.Context, r rule) {
	b := r.base()
	b.stopAccepting()
	b.drain(ctx)
	b.wait()
	g.rules.Lock()
	defer g.rules.Unlock()
	g.rules.list = slices.DeleteFunc(slices.Clone(g.rules.list), func(x rule) bool { return x == r })
}

// start listens on every tunnel address. The target's name is resolved
// per flow, so a Service whose address changes is followed.
func (r *exposeRule) start(ctx context.Context, g *Gateway) error {
	e := r.cfg
	c := g.Config()
	lim := c.Limits
	var d net.Dialer
	for _, a := range c.Interface.Addresses {
		at := netip.AddrPortFrom(a, e.Port)
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
				DialTimeout: lim.UDPDialTimeout, IdleTimeout: lim.UDPIdleTimeout, MaxSessions: lim.UDPMaxSessions,
				// Up: from the tunnel, already within its MTU. Down: replies
				// into the tunnel must fit it unfragmented.
				MaxUp: 65535, MaxDown: udpPayloadMax(c.Interface.MTU, a),
				Stats: &r.stats, Logger: g.log,
			}
			r.udps = append(r.udps, u)
			r.serve(ctx, u.Serve)
		}
	}
	return nil
}

// start listens in the gateway's own network; replies from the peer's
// address and port are let in by the filter.
func (r *forwardRule) start(ctx context.Context, g *Gateway) error {
	f := r.cfg
	c := g.Config()
	lim := c.Limits
	for _, u := range r.ups.list {
		remove := g.filter.AddRemote(policy.Remote{Proto: protoNumber(f.Protocol), Addr: u.To})
		r.closers = append(r.closers, remove)
	}
	var lc net.ListenConfig
	switch f.Protocol {
	case config.TCP:
		ln, err := lc.Listen(ctx, "tcp", f.Listen)
		if err != nil {
			return fmt.Errorf("listening on %s: %w", f.Listen, err)
		}
		r.closers = append(r.closers, func() { ln.Close() })
		r.listening("tcp", ln.Addr())
		t := &forward.TCP{
			Name: f.Name, Listener: ln,
			Dial:        func(ctx context.Context) (net.Conn, error) { return g.ns.DialTCP(ctx, r.ups.current().To) },
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
		r.closers = append(r.closers, func() { pc.Close() })
		r.listening("udp", pc.LocalAddr())
		u := &forward.UDP{
			Name: f.Name, Conn: pc,
			Dial:        func(ctx context.Context) (net.Conn, error) { return g.dialUDP(r.ups.current().To) },
			DialTimeout: lim.UDPDialTimeout, IdleTimeout: lim.UDPIdleTimeout, MaxSessions: lim.UDPMaxSessions,
			MaxUp: udpPayloadMax(c.Interface.MTU, f.To.Addr()), MaxDown: g.udpFromTunnelMax(c.Interface.MTU, f.To.Addr()),
			// Clients of a forward rule are hosts of the gateway's own
			// network: none may take every session.
			MaxPerSource: forward.PerSourceShare(lim.UDPMaxSessions),
			Stats:        &r.stats, Logger: g.log,
		}
		r.udps = append(r.udps, u)
		r.serve(ctx, u.Serve)
	}
	return nil
}

// listening records the address the rule's listener got (the configured
// one may ask for port 0).
func (r *forwardRule) listening(proto string, a net.Addr) {
	r.from = proto + "/" + a.String()
	r.addr, _ = netip.ParseAddrPort(a.String())
}

// ForwardAddr returns the local address a forward rule listens on (useful
// when the configuration asks for port 0).
func (g *Gateway) ForwardAddr(name string) (netip.AddrPort, bool) {
	for _, r := range g.ruleList() {
		if f, ok := r.(*forwardRule); ok && f.name == name {
			return f.addr, f.addr.IsValid()
		}
	}
	return netip.AddrPort{}, false
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
