package node

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/tunnel-dev/tunnel/internal/memlimit"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
	"github.com/tunnel-dev/tunnel/tunnel/forward"
)

// Implementations a node can run.
const (
	ImplTunnel = "tunnel" // this project's gateway
	ImplStock  = "stock"  // wireguard-go's tun/netstack, forwarding the same way
)

// Roles: eks exposes the targets and dials; aks listens and forwards.
const (
	RoleEKS = "eks"
	RoleAKS = "aks"
)

// Tunnel addresses and ports of the benchmark topology.
const (
	EKSAddr = "10.99.0.1"
	AKSAddr = "10.99.0.2"
	TCPPort = 5201
	UDPPort = 7000
	MTU     = 1420
)

var (
	eksAddr = netip.MustParseAddr(EKSAddr)
	aksAddr = netip.MustParseAddr(AKSAddr)
)

// Spec says what one gateway of a measurement runs. It travels to a
// node process on standard input: it holds a private key.
type Spec struct {
	Impl   string        `json:"impl"`
	Role   string        `json:"role"`
	Tuning tunnel.Tuning `json:"tuning"`
	// PrivateKey is base64; PeerKey the peer's public key.
	PrivateKey string `json:"private_key"`
	PeerKey    string `json:"peer_key"`
	// PeerEndpoint is where eks dials aks.
	PeerEndpoint string `json:"peer_endpoint,omitempty"`
	// TCPTarget and UDPTarget are what eks exposes.
	TCPTarget string `json:"tcp_target,omitempty"`
	UDPTarget string `json:"udp_target,omitempty"`
}

// Ready is what a node reports once it carries traffic.
type Ready struct {
	PID        int    `json:"pid"`
	ListenPort int    `json:"listen_port"`
	TCPForward string `json:"tcp_forward,omitempty"`
	UDPForward string `json:"udp_forward,omitempty"`
}

// Run starts a node in this process. stop ends it.
func Run(ctx context.Context, spec Spec, log *slog.Logger) (Ready, func(), error) {
	priv, err := keys.ParsePrivateKey(spec.PrivateKey)
	if err != nil {
		return Ready{}, nil, err
	}
	peer, err := keys.ParsePublicKey(spec.PeerKey)
	if err != nil {
		return Ready{}, nil, err
	}
	switch spec.Impl {
	case ImplTunnel:
		return runTunnelNode(ctx, spec, priv, peer, log)
	case ImplStock:
		return runStockNode(ctx, spec, priv, peer, log)
	}
	return Ready{}, nil, fmt.Errorf("unknown implementation %q", spec.Impl)
}

func runTunnelNode(ctx context.Context, spec Spec, priv keys.PrivateKey, peer keys.PublicKey, log *slog.Logger) (Ready, func(), error) {
	c := &config.Config{
		Interface: config.Interface{Name: "bench-" + spec.Role, MTU: MTU, UAPIDir: config.Disabled},
		Limits: config.Limits{
			UDPIdleTimeout: time.Minute, UDPMaxSessions: 4096, UDPDialTimeout: 5 * time.Second,
			TCPDialTimeout: 5 * time.Second, TCPMaxConnections: 4096,
		},
		Admin: config.Admin{Listen: config.Disabled},
	}
	gw := &tunnel.Gateway{PrivateKey: &priv, Logger: log, Tuning: spec.Tuning}
	if spec.Role == RoleEKS {
		c.Interface.Addresses = []netip.Addr{eksAddr}
		c.Peers = []config.Peer{{Name: "aks", Key: peer, Endpoint: spec.PeerEndpoint, PersistentKeepalive: 25 * time.Second,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(aksAddr, 32)}}}
		c.Expose = []config.Expose{
			{Name: "tcp", Protocol: config.TCP, Port: TCPPort, Target: spec.TCPTarget, Peers: []string{"aks"}},
			{Name: "udp", Protocol: config.UDP, Port: UDPPort, Target: spec.UDPTarget, Peers: []string{"aks"}},
		}
	} else {
		c.Interface.Addresses = []netip.Addr{aksAddr}
		c.Peers = []config.Peer{{Name: "eks", Key: peer, AllowedIPs: []netip.Prefix{netip.PrefixFrom(eksAddr, 32)}}}
		c.Forward = []config.Forward{
			{Name: "tcp", Protocol: config.TCP, Listen: "127.0.0.1:0", Peer: "eks", To: netip.AddrPortFrom(eksAddr, TCPPort)},
			{Name: "udp", Protocol: config.UDP, Listen: "127.0.0.1:0", Peer: "eks", To: netip.AddrPortFrom(eksAddr, UDPPort)},
		}
	}
	if err := gw.Start(ctx, c); err != nil {
		return Ready{}, nil, err
	}
	r := Ready{PID: os.Getpid(), ListenPort: gw.ListenPort()}
	if spec.Role == RoleAKS {
		t, _ := gw.ForwardAddr("tcp")
		u, _ := gw.ForwardAddr("udp")
		r.TCPForward, r.UDPForward = t.String(), u.String()
	}
	return r, func() { gw.Close() }, nil
}

// runStockNode is wireguard-go's tun/netstack with the default bind,
// forwarding with the same copy loops as ours: the baseline.
func runStockNode(ctx context.Context, spec Spec, priv keys.PrivateKey, peer keys.PublicKey, log *slog.Logger) (Ready, func(), error) {
	self, other := aksAddr, eksAddr
	if spec.Role == RoleEKS {
		self, other = eksAddr, aksAddr
	}
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{self}, nil, MTU)
	if err != nil {
		return Ready{}, nil, err
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nallowed_ip=%s/32\n", priv.UAPIHex(), peer.UAPIHex(), other)
	if spec.Role == RoleEKS {
		uapi += fmt.Sprintf("endpoint=%s\npersistent_keepalive_interval=25\n", spec.PeerEndpoint)
	}
	if err := dev.IpcSet(uapi); err != nil {
		dev.Close()
		return Ready{}, nil, err
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return Ready{}, nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	var stats forward.Stats
	var d net.Dialer
	var closers []func()
	// serving counts the forwarders: the netstack is closed only after
	// they have returned, so no session dials into a closed stack.
	var serving sync.WaitGroup
	serveTCP := func(ln net.Listener, dial func(context.Context) (net.Conn, error)) {
		closers = append(closers, func() { ln.Close() })
		p := &forward.TCP{Name: "tcp", Listener: ln, Dial: dial, DialTimeout: 5 * time.Second, Stats: &stats, Logger: log}
		serving.Go(func() {
			_ = p.Serve(ctx)
			p.Shutdown(ctx) // ctx is done: closes what is left, waits for it
		})
	}
	serveUDP := func(pc net.PacketConn, dial func(context.Context) (net.Conn, error)) {
		closers = append(closers, func() { pc.Close() })
		p := &forward.UDP{Name: "udp", Conn: pc, Dial: dial, DialTimeout: 5 * time.Second, IdleTimeout: time.Minute,
			MaxSessions: 4096, MaxUp: 65535, MaxDown: 65535, Stats: &stats, Logger: log}
		serving.Go(func() { _ = p.Serve(ctx) })
	}
	r := Ready{PID: os.Getpid()}
	fail := func(err error) (Ready, func(), error) {
		cancel()
		for _, c := range closers {
			c()
		}
		serving.Wait()
		dev.Close()
		return Ready{}, nil, err
	}
	if spec.Role == RoleEKS {
		ln, err := tnet.ListenTCPAddrPort(netip.AddrPortFrom(eksAddr, TCPPort))
		if err != nil {
			return fail(err)
		}
		serveTCP(ln, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", spec.TCPTarget) })
		pc, err := tnet.ListenUDPAddrPort(netip.AddrPortFrom(eksAddr, UDPPort))
		if err != nil {
			return fail(err)
		}
		serveUDP(pc, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "udp", spec.UDPTarget) })
	} else {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		r.TCPForward = ln.Addr().String()
		serveTCP(ln, func(ctx context.Context) (net.Conn, error) {
			return tnet.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(eksAddr, TCPPort))
		})
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		r.UDPForward = pc.LocalAddr().String()
		serveUDP(pc, func(context.Context) (net.Conn, error) {
			return tnet.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(eksAddr, UDPPort))
		})
	}
	get, err := dev.IpcGet()
	if err != nil {
		return fail(err)
	}
	r.ListenPort = listenPortOf(get)
	return r, func() {
		cancel()
		for _, c := range closers {
			c()
		}
		serving.Wait()
		dev.Close()
	}, nil
}

func listenPortOf(uapi string) int {
	sc := bufio.NewScanner(strings.NewReader(uapi))
	for sc.Scan() {
		var p int
		if _, err := fmt.Sscanf(sc.Text(), "listen_port=%d", &p); err == nil {
			return p
		}
	}
	return 0
}

// Main runs one node as a process: the spec on standard input, one
// line of Ready JSON on standard output, then it runs until standard
// input closes. `tunnel bench node` calls it.
func Main(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	r := bufio.NewReader(stdin)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading node spec: %w", err)
	}
	var spec Spec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("reading node spec: %w", err)
	}
	// As a gateway does: the runtime's soft limit from the cgroup's.
	if _, _, err := memlimit.FromCgroup(); err != nil {
		return err
	}
	memlimit.TightenGC()
	unprofile, err := profile(ctx, spec)
	if err != nil {
		return err
	}
	defer unprofile()
	ready, stop, err := Run(ctx, spec, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	defer stop()
	if err := json.NewEncoder(stdout).Encode(ready); err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { _, _ = io.Copy(io.Discard, r); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
	}
	return nil
}
