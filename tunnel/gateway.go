package tunnel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/bind"
	"github.com/tunnel-dev/tunnel/tunnel/config"
	"github.com/tunnel-dev/tunnel/tunnel/netstack"
	"github.com/tunnel-dev/tunnel/tunnel/policy"
)

// Gateway is one end of the tunnel. Set its fields, then call Start. A
// Gateway runs once: after Close, make a new one.
type Gateway struct {
	// Config is what to run. Required. The gateway does not modify it.
	Config *config.Config
	// PrivateKey, if set, is used instead of reading
	// Config.Interface.PrivateKeyFile (for embedding and tests).
	PrivateKey *keys.PrivateKey
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
	// Registry receives the gateway's metrics; nil makes a registry of its
	// own, which the admin server serves.
	Registry *prometheus.Registry
	// Resolver looks up peer endpoints; nil uses the system resolver.
	Resolver *net.Resolver
	// DrainTimeout bounds how long Shutdown lets TCP flows finish.
	// Default 10s.
	DrainTimeout time.Duration
	// Bind, if set, replaces the UDP socket WireGuard uses (tests and
	// benchmarks); nil picks one (see defaultBind).
	Bind conn.Bind
	// Tuning turns performance levers off, for benchmarks that measure
	// each. The zero value is the tuned default.
	Tuning Tuning

	mu      sync.Mutex // serialises Start and Close
	state   atomic.Int32
	rmu     sync.RWMutex // guards rules; never held while waiting
	priv    keys.PrivateKey
	pub     keys.PublicKey
	dev     *device.Device
	ns      *netstack.Stack
	filter  *policy.Filter
	cfg     atomic.Pointer[config.Config] // the running configuration
	pmu     sync.Mutex                    // guards peers, and changes to the device's peers
	peers   []*peer
	rules   []*rule
	admin   *admin.Server
	uapi    *uapiServer
	cancel  context.CancelFunc
	runCtx  context.Context // lives until Close: rules started by Reload run under it
	reload  sync.Mutex      // one Reload at a time
	wg      sync.WaitGroup
	wgc     wgCounters
	started time.Time
	log     *slog.Logger

	connected *bind.Connected // the dial-only socket, when in use

	// Endpoint re-resolution timing; zero means the defaults. Tests
	// shorten them.
	resolveEvery, staleHandshake time.Duration
}

const (
	stateNew int32 = iota
	stateRunning
	stateClosed
)

// Tuning names the gateway's performance levers. Each is on unless turned
// off here; `tunnel bench` measures what each is worth.
type Tuning struct {
	// NoGSO: the netstack cuts TCP into MTU-sized packets itself.
	NoGSO bool
	// NoGRO: inbound TCP segments reach the netstack one by one.
	NoGRO bool
	// VerifyChecksums: inbound checksums are checked although WireGuard
	// has authenticated every byte.
	VerifyChecksums bool
	// NoUDPOffload: the connected socket sends and receives datagram by
	// datagram, without UDP GSO/GRO.
	NoUDPOffload bool
	// DefaultBind: a dial-only gateway uses wireguard-go's listening
	// socket rather than one connected to its peer.
	DefaultBind bool
	// NoFastUDP: UDP rules and sockets go through gVisor's UDP layer
	// instead of the fast path that builds and parses IP/UDP headers on
	// the TUN's packets directly.
	NoFastUDP bool
	// QueueLen and BatchSize override the netstack's queue depth and the
	// packets handed to WireGuard per read; zero keeps the defaults.
	QueueLen, BatchSize int
}

// ErrBadConfig marks a Start error caused by the configuration or the files
// it names (a missing or group-readable key file), not by the machine.
var ErrBadConfig = errors.New("bad configuration")

// ErrNotRunning is returned by calls on a gateway that is not started or is
// closed.
var ErrNotRunning = errors.New("gateway is not running")

// Start brings the gateway up: WireGuard on its UDP port, the netstack, the
// rules' listeners, the UAPI socket and the admin server. It returns once
// all of them are listening; on error nothing is left running.
func (g *Gateway) Start(ctx context.Context) (err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state.Load() != stateNew {
		return errors.New("starting gateway: already started")
	}
	if g.Config == nil {
		return errors.New("starting gateway: no Config")
	}
	g.log = g.Logger
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	if g.DrainTimeout <= 0 {
		g.DrainTimeout = 10 * time.Second
	}
	if g.Registry == nil {
		g.Registry = admin.NewRegistry()
	}
	c := g.Config
	g.cfg.Store(c)
	g.started = time.Now()

	if g.PrivateKey != nil {
		g.priv = *g.PrivateKey
	} else {
		g.priv, err = keys.LoadPrivateKey(c.Interface.PrivateKeyFile)
		if err != nil {
			return fmt.Errorf("starting gateway: %w: interface.privateKeyFile: %w", ErrBadConfig, err)
		}
	}
	g.pub = g.priv.Public()
	for _, p := range c.Peers {
		if slices.Contains(p.Keys(), g.pub) {
			return fmt.Errorf("starting gateway: %w: peer %q has this gateway's own public key", ErrBadConfig, p.Name)
		}
	}
	for _, pc := range c.Peers {
		p, err := g.newPeer(ctx, pc)
		if err != nil {
			return fmt.Errorf("starting gateway: %w", err)
		}
		g.peers = append(g.peers, p)
	}

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.cancel = cancel
	g.runCtx = runCtx
	defer func() {
		if err != nil {
			g.teardown()
		}
	}()

	g.filter = policy.New(c.Interface.Addresses, exposedPorts(c))
	var routes []netip.Prefix
	for _, p := range c.Peers {
		routes = append(routes, p.AllowedIPs...)
	}
	g.ns, err = netstack.New(netstack.Options{
		Addresses: c.Interface.Addresses,
		Routes:    routes,
		MTU:       c.Interface.MTU,
		Filter:    func(b []byte) bool { return g.filter.Check(b) == policy.Accept },

		NoGSO:           g.Tuning.NoGSO,
		NoGRO:           g.Tuning.NoGRO,
		VerifyChecksums: g.Tuning.VerifyChecksums,
		QueueLen:        g.Tuning.QueueLen,
		BatchSize:       g.Tuning.BatchSize,
	})
	if err != nil {
		return fmt.Errorf("starting gateway: %w", err)
	}
	bind := g.Bind
	if bind == nil {
		bind = g.defaultBind()
	}
	g.dev = device.NewDevice(g.ns, bind, wgLogger(g.log, &g.wgc))
	if err := g.dev.IpcSet(uapiSet(g.priv, c.Interface.ListenPort, g.peers)); err != nil {
		return fmt.Errorf("starting gateway: configuring WireGuard: %w", err)
	}
	if err := g.dev.Up(); err != nil {
		return fmt.Errorf("starting gateway: bringing WireGuard up (is udp/%d free?): %w", c.Interface.ListenPort, err)
	}

	if err := g.startRules(runCtx); err != nil {
		return fmt.Errorf("starting gateway: %w", err)
	}
	if c.Interface.UAPIDir != config.Disabled {
		g.uapi, err = listenUAPI(c.Interface.UAPIDir, c.Interface.Name, g.dev, g.log)
		if err != nil {
			return fmt.Errorf("starting gateway: %w", err)
		}
	}
	g.registerMetrics()
	if c.Admin.Listen != config.Disabled {
		g.admin, err = admin.Start(ctx, admin.Options{
			Addr:      c.Admin.Listen,
			Registry:  g.Registry,
			Ready:     g.Ready,
			Profiling: c.Admin.Pprof,
			Handlers:  map[string]http.Handler{"/status": admin.JSON(func() any { return g.Status() })},
			Logger:    g.log,
		})
		if err != nil {
			return fmt.Errorf("starting gateway: %w", err)
		}
	}
	g.wg.Add(2)
	go func() {
		defer g.wg.Done()
		g.watchEndpoints(runCtx)
	}()
	go func() {
		defer g.wg.Done()
		g.watchSuccessors(runCtx)
	}()
	g.state.Store(stateRunning)
	g.log.Info("gateway up",
		"name", c.Interface.Name,
		"public_key", g.pub.String(),
		"listen_port", g.ListenPort(),
		"addresses", c.Interface.Addresses,
		"peers", len(c.Peers), "expose", len(c.Expose), "forward", len(c.Forward),
		"startup", time.Since(g.started).Round(time.Millisecond).String())
	return nil
}

// defaultBind picks the UDP socket: a side that only dials one peer gets a
// socket connected to that peer, so nothing listens for anyone else; a side
// with a listening port (or several peers to dial) gets wireguard-go's.
func (g *Gateway) defaultBind() conn.Bind {
	if g.Config.Interface.ListenPort != 0 || g.Tuning.DefaultBind {
		return conn.NewDefaultBind()
	}
	var dialled []*peer
	for _, p := range g.peers {
		if p.hostport != "" {
			dialled = append(dialled, p)
		}
	}
	if len(dialled) != 1 {
		return conn.NewDefaultBind()
	}
	b := bind.NewConnected(dialled[0].endpoint)
	b.NoOffload = g.Tuning.NoUDPOffload
	g.connected = b
	return b
}

func exposedPorts(c *config.Config) []policy.Port {
	var ports []policy.Port
	for _, e := range c.Expose {
		var allowed []netip.Prefix
		for _, name := range e.Peers {
			if p := c.PeerByName(name); p != nil {
				allowed = append(allowed, p.AllowedIPs...)
			}
		}
		ports = append(ports, policy.Port{Rule: e.Name, Proto: protoNumber(e.Protocol), Port: e.Port, Allowed: allowed})
	}
	return ports
}

func protoNumber(p string) uint8 {
	if p == config.TCP {
		return policy.ProtoTCP
	}
	return policy.ProtoUDP
}

// PublicKey is the gateway's public key. Valid after Start; a Reload
// with a new private key changes it.
func (g *Gateway) PublicKey() keys.PublicKey {
	// Reload replaces the key under pmu, while Status and callers read it.
	g.pmu.Lock()
	defer g.pmu.Unlock()
	return g.pub
}

// ListenPort is the UDP port WireGuard is bound to (an ephemeral one when
// the configuration gives none). Zero before Start.
func (g *Gateway) ListenPort() int {
	if g.dev == nil {
		return 0
	}
	s, err := g.dev.IpcGet()
	if err != nil {
		return 0
	}
	st, err := parseUAPIGet(s)
	if err != nil {
		return 0
	}
	return st.ListenPort
}

// AdminURL is the base URL of the admin server, or "" when it is disabled.
func (g *Gateway) AdminURL() string {
	return g.admin.URL()
}

// Ready reports whether the gateway is carrying its rules: nil when every
// listener is up. It does not wait for the peer: a gateway behind a load
// balancer must be ready before its peer can reach it.
func (g *Gateway) Ready() error {
	if g.state.Load() != stateRunning {
		return ErrNotRunning
	}
	for _, r := range g.ruleList() {
		if err := r.err(); err != nil {
			return fmt.Errorf("rule %s: %w", r.name, err)
		}
	}
	return nil
}

// Shutdown stops accepting new flows and lets TCP flows in flight finish,
// until ctx is done or DrainTimeout passes; then it closes the gateway.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if g.state.Load() != stateRunning {
		return nil
	}
	rules := g.ruleList()
	ctx, cancel := context.WithTimeout(ctx, g.DrainTimeout)
	defer cancel()
	for _, r := range rules {
		r.stopAccepting()
	}
	for _, r := range rules {
		r.drain(ctx)
	}
	return g.Close()
}

// Close stops everything at once. It is safe to call more than once.
func (g *Gateway) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.state.Load() == stateClosed {
		return nil
	}
	g.teardown()
	g.log.Info("gateway stopped", "name", g.conf().Interface.Name)
	return nil
}

// conf is the running configuration: Config until a Reload replaces it.
func (g *Gateway) conf() *config.Config {
	if c := g.cfg.Load(); c != nil {
		return c
	}
	return g.Config
}

// ruleList returns the running rules.
func (g *Gateway) ruleList() []*rule {
	g.rmu.RLock()
	defer g.rmu.RUnlock()
	return g.rules
}

// teardown releases whatever Start made. Called with g.mu held; nothing it
// waits for takes g.mu.
func (g *Gateway) teardown() {
	g.state.Store(stateClosed)
	if g.cancel != nil {
		g.cancel()
	}
	rules := g.ruleList()
	for _, r := range rules {
		r.stopAccepting()
	}
	if g.admin != nil {
		g.admin.Close()
	}
	if g.uapi != nil {
		g.uapi.Close()
	}
	if g.dev != nil {
		// Closes the netstack too, which ends every flow on it.
		g.dev.Close()
	} else if g.ns != nil {
		g.ns.Close()
	}
	g.wg.Wait()
	for _, r := range rules {
		r.wait()
	}
}
