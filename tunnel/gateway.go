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

// Gateway is one end of the tunnel. Set its options, then call Start with
// a configuration. A Gateway runs once: after Close, make a new one.
type Gateway struct {
	// PrivateKey, if set, is used instead of reading the configuration's
	// interface.privateKeyFile (for embedding and tests).
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

	// life serialises Start, Reload and Close: one of them at a time
	// changes what the gateway runs.
	life struct {
		sync.Mutex
		// state is written with the lock held and read without it.
		state  atomic.Int32
		cancel context.CancelFunc
		// runCtx lives until Close: rules started by Reload run under it.
		runCtx context.Context
	}

	// cfg is the running configuration: stored by Start and Reload (under
	// life), read without a lock.
	cfg atomic.Pointer[config.Config]

	// peers guards the configured peers, the gateway's own key, and every
	// change to the device's peers.
	peers struct {
		sync.Mutex
		list []*peer
		priv keys.PrivateKey
		pub  keys.PublicKey
	}

	// rules guards the list of running rules. The list is replaced, never
	// changed in place, so a reader may keep it; the lock is never held
	// while waiting for a rule.
	rules struct {
		sync.RWMutex
		list []rule
	}

	// Set by Start before anything else runs, then only read.
	dev       *device.Device
	ns        *netstack.Stack
	filter    *policy.Filter
	admin     *admin.Server
	uapi      *uapiServer
	connected *bind.Connected // the dial-only socket, when in use
	started   time.Time
	log       *slog.Logger
	wg        sync.WaitGroup // the endpoint and successor watchers

	wgc  wgCounters // atomic; counted by the device's logger
	auth authEvents // first handshakes, silent peers, unknown keys (peerwatch.go)

	// Peer watch timing (peerwatch.go); zero means the defaults. Tests
	// shorten them.
	peerWatchEvery, silentAfter time.Duration

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
	// NoUDPOffload: the gateway's UDP socket sends and receives datagram
	// by datagram, without UDP GSO/GRO.
	NoUDPOffload bool
	// DefaultBind: the gateway uses wireguard-go's default bind (a socket
	// per address family, batches of 128) rather than ours: a socket
	// connected to its one peer when it only dials, one listening socket
	// with batches of 64 otherwise.
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

// Start brings the gateway up with configuration c: WireGuard on its UDP
// port, the netstack, the rules' listeners, the UAPI socket and the admin
// server. It returns once all of them are listening; on error nothing is
// left running. The gateway does not modify c; Config returns it until a
// Reload replaces it.
func (g *Gateway) Start(ctx context.Context, c *config.Config) (err error) {
	g.life.Lock()
	defer g.life.Unlock()
	if g.life.state.Load() != stateNew {
		return errors.New("starting gateway: already started")
	}
	if c == nil {
		return errors.New("starting gateway: no configuration")
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
	g.cfg.Store(c)
	g.started = time.Now()
	g.auth.log.Store(g.log)
	g.auth.unknown.Every = unknownKeyLogEvery
	g.wgc.auth = &g.auth

	priv := g.PrivateKey
	if priv == nil {
		k, err := keys.LoadPrivateKey(c.Interface.PrivateKeyFile)
		if err != nil {
			return fmt.Errorf("starting gateway: %w: interface.privateKeyFile: %w", ErrBadConfig, err)
		}
		priv = &k
	}
	if err := checkOwnKey(c, priv.Public()); err != nil {
		return fmt.Errorf("starting gateway: %w", err)
	}
	peers, err := g.newPeers(ctx, c)
	if err != nil {
		return fmt.Errorf("starting gateway: %w", err)
	}
	g.peers.Lock()
	g.peers.list, g.peers.priv, g.peers.pub = peers, *priv, priv.Public()
	g.peers.Unlock()
	g.auth.strangers.setKey(*priv)
	g.auth.known = func(k keys.PublicKey) bool { return g.dev.LookupPeer(device.NoisePublicKey(k)) != nil }

	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	g.life.cancel = cancel
	g.life.runCtx = runCtx
	defer func() {
		if err != nil {
			g.teardown()
		}
	}()

	g.filter = policy.New(c.Interface.Addresses, exposedPorts(c))
	g.ns, err = netstack.New(netstack.Options{
		Addresses: c.Interface.Addresses,
		Routes:    routes(c),
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
	g.filter.SetFlowCheck(g.ns.HasFlow)
	b := g.Bind
	if b == nil {
		b = g.defaultBind(c, peers)
	}
	// The netstack paces its reads by what WireGuard has sent.
	// The bind keeps a copy of each initiation, to name the key of one
	// WireGuard refuses (strangers.go), and the netstack holds receives
	// back while WireGuard holds too many packets on their way to it.
	counted := bind.Counting(bind.WatchInitiations(b, g.auth.strangers.seen), g.ns.Sent)
	counted.Receiving, counted.Received = g.ns.AwaitInbound, g.ns.Received
	g.dev = device.NewDevice(g.ns, counted, wgLogger(g.log, &g.wgc))
	if err := g.dev.IpcSet(uapiSet(*priv, c.Interface.ListenPort, peers)); err != nil {
		return fmt.Errorf("starting gateway: configuring WireGuard: %w", err)
	}
	if err := g.dev.Up(); err != nil {
		return fmt.Errorf("starting gateway: bringing WireGuard up (is udp/%d free?): %w", c.Interface.ListenPort, err)
	}

	for _, r := range configuredRules(c) {
		if err := g.startRule(runCtx, r); err != nil {
			return fmt.Errorf("starting gateway: %w", err)
		}
	}
	if c.Interface.UAPIDir != config.Disabled {
		g.uapi, err = listenUAPI(c.Interface.UAPIDir, c.Interface.Name, g.dev, g.log)
		if err != nil {
			return fmt.Errorf("starting gateway: %w", err)
		}
	}
	g.registerMetrics()
	g.registerAuthMetrics()
	if c.Admin.Listen != config.Disabled {
		g.admin, err = admin.Start(ctx, admin.Options{
			Addr:      c.Admin.Listen,
			Registry:  g.Registry,
			Ready:     g.Ready,
			Profiling: c.Admin.Pprof,
			Handlers: map[string]http.Handler{
				"/status": admin.JSON(func() any { return g.Status() }),
				"/audit":  &auditHandler{g: g}, // POST; audithandler.go
			},
			Logger: g.log,
		})
		if err != nil {
			return fmt.Errorf("starting gateway: %w", err)
		}
	}
	g.wg.Add(4)
	go func() {
		defer g.wg.Done()
		g.watchPeers(runCtx)
	}()
	go func() {
		defer g.wg.Done()
		g.watchEndpoints(runCtx)
	}()
	go func() {
		defer g.wg.Done()
		g.watchHealth(runCtx)
	}()
	go func() {
		defer g.wg.Done()
		g.watchSuccessors(runCtx)
	}()
	g.life.state.Store(stateRunning)
	g.log.Info("gateway up",
		"name", c.Interface.Name,
		"public_key", priv.Public().String(),
		"listen_port", g.ListenPort(),
		"addresses", c.Interface.Addresses,
		"peers", len(c.Peers), "expose", len(c.Expose), "forward", len(c.Forward),
		"startup", time.Since(g.started).Round(time.Millisecond).String())
	return nil
}

// checkOwnKey refuses a configuration that names the gateway's own key as
// a peer's.
func checkOwnKey(c *config.Config, own keys.PublicKey) error {
	for _, p := range c.Peers {
		if slices.Contains(p.Keys(), own) {
			return fmt.Errorf("%w: peer %q has this gateway's own public key", ErrBadConfig, p.Name)
		}
	}
	return nil
}

// routes are the prefixes the netstack sends into the tunnel: every peer's
// allowed IPs.
func routes(c *config.Config) []netip.Prefix {
	var r []netip.Prefix
	for _, p := range c.Peers {
		r = append(r, p.AllowedIPs...)
	}
	return r
}

// defaultBind picks the UDP socket: a side that only dials one peer gets a
// socket connected to that peer, so nothing listens for anyone else; a side
// with a listening port (or several peers to dial) gets one listening
// socket with small batches (bind.Listening), which holds a quarter of the
// buffers wireguard-go's default bind does.
func (g *Gateway) defaultBind(c *config.Config, peers []*peer) conn.Bind {
	if g.Tuning.DefaultBind {
		return conn.NewDefaultBind()
	}
	listening := func() conn.Bind {
		b := bind.NewListening()
		b.NoOffload = g.Tuning.NoUDPOffload
		return b
	}
	if c.Interface.ListenPort != 0 {
		return listening()
	}
	var dialled []*peer
	for _, p := range peers {
		if p.hostport != "" {
			dialled = append(dialled, p)
		}
	}
	if len(dialled) != 1 {
		return listening()
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
	g.peers.Lock()
	defer g.peers.Unlock()
	return g.peers.pub
}

// Config is the running configuration: the one given to Start, or to the
// last Reload that got past validation (see Reload). Nil before Start.
// The gateway does not modify it; neither may the caller.
func (g *Gateway) Config() *config.Config {
	return g.cfg.Load()
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
	if !g.running() {
		return ErrNotRunning
	}
	for _, r := range g.ruleList() {
		if err := r.base().err(); err != nil {
			return fmt.Errorf("rule %s: %w", r.base().name, err)
		}
	}
	return nil
}

// Shutdown stops accepting new flows and lets TCP flows in flight finish,
// until ctx is done or DrainTimeout passes; then it closes the gateway.
func (g *Gateway) Shutdown(ctx context.Context) error {
	if !g.running() {
		return nil
	}
	rules := g.ruleList()
	ctx, cancel := context.WithTimeout(ctx, g.DrainTimeout)
	defer cancel()
	for _, r := range rules {
		r.base().stopAccepting()
	}
	for _, r := range rules {
		r.base().drain(ctx)
	}
	return g.Close()
}

// Close stops everything at once. It is safe to call more than once. A
// Reload in progress finishes first.
func (g *Gateway) Close() error {
	g.life.Lock()
	defer g.life.Unlock()
	if g.life.state.Load() == stateClosed {
		return nil
	}
	g.teardown()
	if c := g.Config(); c != nil {
		g.log.Info("gateway stopped", "name", c.Interface.Name)
	}
	return nil
}

// running reports whether Start has finished and Close has not begun.
func (g *Gateway) running() bool { return g.life.state.Load() == stateRunning }

// ruleList returns the running rules.
func (g *Gateway) ruleList() []rule {
	g.rules.RLock()
	defer g.rules.RUnlock()
	return g.rules.list
}

// teardown releases whatever Start made. Called with g.life held; nothing
// it waits for takes g.life.
func (g *Gateway) teardown() {
	g.life.state.Store(stateClosed)
	if g.life.cancel != nil {
		g.life.cancel()
	}
	rules := g.ruleList()
	for _, r := range rules {
		r.base().stopAccepting()
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
		r.base().wait()
	}
}
