package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
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
var (
	eksAddr = netip.MustParseAddr("10.99.0.1")
	aksAddr = netip.MustParseAddr("10.99.0.2")
)

const (
	tcpPort = 5201
	udpPort = 7000
	mtu     = 1420
)

// NodeSpec says what one gateway of a measurement runs. It travels to a
// node process on standard input: it holds a private key.
type NodeSpec struct {
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

// NodeReady is what a node reports once it carries traffic.
type NodeReady struct {
	PID        int    `json:"pid"`
	ListenPort int    `json:"listen_port"`
	TCPForward string `json:"tcp_forward,omitempty"`
	UDPForward string `json:"udp_forward,omitempty"`
}

// runNode starts a node in this process. stop ends it.
func runNode(ctx context.Context, spec NodeSpec, log *slog.Logger) (NodeReady, func(), error) {
	priv, err := keys.ParsePrivateKey(spec.PrivateKey)
	if err != nil {
		return NodeReady{}, nil, err
	}
	peer, err := keys.ParsePublicKey(spec.PeerKey)
	if err != nil {
		return NodeReady{}, nil, err
	}
	switch spec.Impl {
	case ImplTunnel:
		return runTunnelNode(ctx, spec, priv, peer, log)
	case ImplStock:
		return runStockNode(ctx, spec, priv, peer, log)
	}
	return NodeReady{}, nil, fmt.Errorf("unknown implementation %q", spec.Impl)
}

func runTunnelNode(ctx context.Context, spec NodeSpec, priv keys.PrivateKey, peer keys.PublicKey, log *slog.Logger) (NodeReady, func(), error) {
	c := &config.Config{
		Interface: config.Interface{Name: "bench-" + spec.Role, MTU: mtu, UAPIDir: config.Disabled},
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
			{Name: "tcp", Protocol: config.TCP, Port: tcpPort, Target: spec.TCPTarget, Peers: []string{"aks"}},
			{Name: "udp", Protocol: config.UDP, Port: udpPort, Target: spec.UDPTarget, Peers: []string{"aks"}},
		}
	} else {
		c.Interface.Addresses = []netip.Addr{aksAddr}
		c.Peers = []config.Peer{{Name: "eks", Key: peer, AllowedIPs: []netip.Prefix{netip.PrefixFrom(eksAddr, 32)}}}
		c.Forward = []config.Forward{
			{Name: "tcp", Protocol: config.TCP, Listen: "127.0.0.1:0", Peer: "eks", To: netip.AddrPortFrom(eksAddr, tcpPort)},
			{Name: "udp", Protocol: config.UDP, Listen: "127.0.0.1:0", Peer: "eks", To: netip.AddrPortFrom(eksAddr, udpPort)},
		}
	}
	if err := gw.Start(ctx, c); err != nil {
		return NodeReady{}, nil, err
	}
	r := NodeReady{PID: os.Getpid(), ListenPort: gw.ListenPort()}
	if spec.Role == RoleAKS {
		t, _ := gw.ForwardAddr("tcp")
		u, _ := gw.ForwardAddr("udp")
		r.TCPForward, r.UDPForward = t.String(), u.String()
	}
	return r, func() { gw.Close() }, nil
}

// runStockNode is wireguard-go's tun/netstack with the default bind,
// forwarding with the same copy loops as ours: the baseline.
func runStockNode(ctx context.Context, spec NodeSpec, priv keys.PrivateKey, peer keys.PublicKey, log *slog.Logger) (NodeReady, func(), error) {
	self, other := aksAddr, eksAddr
	if spec.Role == RoleEKS {
		self, other = eksAddr, aksAddr
	}
	tdev, tnet, err := netstack.CreateNetTUN([]netip.Addr{self}, nil, mtu)
	if err != nil {
		return NodeReady{}, nil, err
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	uapi := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nallowed_ip=%s/32\n", priv.UAPIHex(), peer.UAPIHex(), other)
	if spec.Role == RoleEKS {
		uapi += fmt.Sprintf("endpoint=%s\npersistent_keepalive_interval=25\n", spec.PeerEndpoint)
	}
	if err := dev.IpcSet(uapi); err != nil {
		dev.Close()
		return NodeReady{}, nil, err
	}
	if err := dev.Up(); err != nil {
		dev.Close()
		return NodeReady{}, nil, err
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
	r := NodeReady{PID: os.Getpid()}
	fail := func(err error) (NodeReady, func(), error) {
		cancel()
		for _, c := range closers {
			c()
		}
		serving.Wait()
		dev.Close()
		return NodeReady{}, nil, err
	}
	if spec.Role == RoleEKS {
		ln, err := tnet.ListenTCPAddrPort(netip.AddrPortFrom(eksAddr, tcpPort))
		if err != nil {
			return fail(err)
		}
		serveTCP(ln, func(ctx context.Context) (net.Conn, error) { return d.DialContext(ctx, "tcp", spec.TCPTarget) })
		pc, err := tnet.ListenUDPAddrPort(netip.AddrPortFrom(eksAddr, udpPort))
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
			return tnet.DialContextTCPAddrPort(ctx, netip.AddrPortFrom(eksAddr, tcpPort))
		})
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			return fail(err)
		}
		r.UDPForward = pc.LocalAddr().String()
		serveUDP(pc, func(context.Context) (net.Conn, error) {
			return tnet.DialUDPAddrPort(netip.AddrPort{}, netip.AddrPortFrom(eksAddr, udpPort))
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

// NodeMain runs one node as a process: the spec on standard input, one
// line of NodeReady JSON on standard output, then it runs until standard
// input closes. `tunnel bench node` calls it.
func NodeMain(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	r := bufio.NewReader(stdin)
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("reading node spec: %w", err)
	}
	var spec NodeSpec
	if err := json.Unmarshal(line, &spec); err != nil {
		return fmt.Errorf("reading node spec: %w", err)
	}
	// As a gateway does: the runtime's soft limit from the cgroup's.
	if _, _, err := memlimit.FromCgroup(); err != nil {
		return err
	}
	memlimit.TightenGC()
	unprofile, err := profileNode(ctx, spec)
	if err != nil {
		return err
	}
	defer unprofile()
	ready, stop, err := runNode(ctx, spec, slog.New(slog.DiscardHandler))
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

// node is a running node, in a process or in this one.
type node struct {
	ready  NodeReady
	stop   func()
	output func() string // what a node process printed, if any
	pid    int           // the node process, if it is one
}

// startProcessNode starts `exe args... ` as a node process. start, if
// set, starts the command (in a namespace, as another user); nil is
// cmd.Start.
func startProcessNode(ctx context.Context, exe []string, spec NodeSpec, start func(*exec.Cmd) error) (*node, error) {
	if start == nil {
		start = (*exec.Cmd).Start
	}
	cmd := exec.Command(exe[0], exe[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := start(cmd); err != nil {
		return nil, fmt.Errorf("starting node %v: %w", exe, err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	b, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		stop()
		return nil, err
	}
	ch := make(chan error, 1)
	var ready NodeReady
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &ready)
		}
		ch <- err
	}()
	select {
	case err := <-ch:
		if err != nil {
			stop()
			return nil, fmt.Errorf("node %s/%s did not start: %w\n%s", spec.Impl, spec.Role, err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		stop()
		return nil, errors.New("node did not report ready in 15 s")
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
	return &node{ready: ready, stop: stop, output: stderr.String, pid: cmd.Process.Pid}, nil
}

// lockedBuffer collects a node's standard error for when it fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
