//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tunnel-dev/tunnel/internal/netns"
	"github.com/tunnel-dev/tunnel/internal/procstat"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/bench/node"
)

// The production shape: two network namespaces joined by a veth pair. A
// kernel client (iperf3) in namespace A reaches gateway A; WireGuard's UDP
// crosses the veth to gateway B in namespace B, which reaches a kernel
// server (iperf3) there.
const (
	vethA     = "192.168.99.1"
	vethB     = "192.168.99.2"
	anchorWG  = 51820 // the TUN side's listening port
	iperfPort = 5201
	echoPort  = 7000
	// unprivUID is how a pod runs the gateway: UID 65532, no capabilities.
	unprivUID = 65532
)

// NetnsSupported says why the production shape cannot be measured here, or
// nil: it needs root and the commands it runs.
func NetnsSupported() error {
	if os.Geteuid() != 0 {
		return errors.New("--netns needs root to create network namespaces and TUN devices")
	}
	for _, c := range []string{"ip", "tc", "iperf3"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("--netns needs %s on PATH (apt-get install iproute2 iperf3)", c)
		}
	}
	return nil
}

// RunNetns measures every row in the production shape, Repeats times
// each, round robin.
func RunNetns(ctx context.Context, o NetnsOptions) (*Report, error) {
	if err := NetnsSupported(); err != nil {
		return nil, err
	}
	o.defaults()
	if len(o.NodeCommand) == 0 {
		return nil, errors.New("the production shape needs the node command (tunnel bench node)")
	}
	rows := netnsRows(o)
	if o.Only != "" {
		var kept []netnsRow
		for _, r := range rows {
			if strings.Contains(r.name, o.Only) {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			return nil, fmt.Errorf("--only %q matches no path", o.Only)
		}
		rows = kept
	}
	for _, r := range rows {
		for _, e := range []end{r.a, r.b} {
			if e.kind == endTUN && e.wg == "" {
				return nil, fmt.Errorf("%s: no wireguard-go binary given", r.name)
			}
		}
	}
	sh, err := newShape(o)
	if err != nil {
		return nil, err
	}
	defer sh.Close()

	all := make([]rowSamples, len(rows))
	for i := range all {
		all[i].tcp = map[int][]float64{}
		all[i].gw = make([]gwSamples, 2)
	}
	for rep := range o.Repeats {
		for i, r := range rows {
			if all[i].err != nil || ctx.Err() != nil {
				continue
			}
			o.Progress(fmt.Sprintf("round %d/%d: %s", rep+1, o.Repeats, r.name))
			if err := sh.measure(ctx, o, r, &all[i]); err != nil {
				all[i].err = err
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	report := &Report{Started: time.Now(), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Duration: o.Duration.String(), Repeats: o.Repeats, Link: o.Link,
		Shape: "two network namespaces joined by a veth pair, gateways as processes, iperf3 at both ends", LinkEmulation: sh.emulation}
	for i, r := range rows {
		res := all[i].result(r, o.Streams[0])
		if res.LoadTCP > 0 {
			res.QUICFlows = o.QUICFlows
		}
		report.Results = append(report.Results, res)
	}
	report.setAnchorRatios(o.Streams[0])
	return report, nil
}

// shape is the two namespaces, the servers in B, and what the rows share.
type shape struct {
	a, b      string
	ifA, ifB  string // TUN interface names
	dir       string // holds the unprivileged copy of the node binary
	nodeCmd   []string
	unprivCmd []string
	// baseline runs an earlier tunnel binary's nodes, root and not.
	baselineCmd, baselineUnpriv []string
	echo                        net.PacketConn
	sink                        *quicSink // on echo's socket
	link                        Link
	// proxy: the link is emulated by a UDP proxy, not tc netem.
	proxy     bool
	emulation string
}

func newShape(o NetnsOptions) (_ *shape, err error) {
	sh := &shape{a: netns.Name("tbnsa"), b: netns.Name("tbnsb"), ifA: netns.Name("tbwga"), ifB: netns.Name("tbwgb"),
		nodeCmd: o.NodeCommand, link: o.Link}
	defer func() {
		if err != nil {
			sh.Close()
		}
	}()
	for _, ns := range []string{sh.a, sh.b} {
		_ = netns.Del(ns) // a run that was killed may have left it
		if err := netns.Add(ns); err != nil {
			return nil, err
		}
	}
	if err := netns.AddVeth(sh.a, "veth0", vethA+"/24", sh.b, "veth0", vethB+"/24"); err != nil {
		return nil, err
	}
	if o.Link.Emulated() {
		sh.emulation = "tc netem on both ends of the veth"
		args := netemArgs(o.Link)
		for _, ns := range []string{sh.a, sh.b} {
			out, err := netns.Output("ip", append([]string{"netns", "exec", ns, "tc", "qdisc", "add", "dev", "veth0", "root", "netem"}, args...)...)
			if err != nil && strings.Contains(out, "qdisc kind is unknown") {
				// A kernel without sch_netem: the bench's own UDP proxy,
				// in namespace B between the two ends, emulates the link.
				sh.emulation = "a UDP proxy in namespace B (this kernel has no netem)"
				sh.proxy = true
				break
			}
			if err != nil {
				return nil, fmt.Errorf("adding netem to the veth: %v\n%s", err, out)
			}
		}
	}
	// The unprivileged user must be able to run the node binary, wherever
	// it was built (a test binary lives in a private directory).
	sh.dir, err = os.MkdirTemp("", "tunnel-bench-netns-")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(sh.dir, 0o755); err != nil {
		return nil, err
	}
	exe := filepath.Join(sh.dir, filepath.Base(o.NodeCommand[0]))
	if err := copyFile(o.NodeCommand[0], exe, 0o755); err != nil {
		return nil, fmt.Errorf("copying the node binary for the unprivileged user: %w", err)
	}
	sh.unprivCmd = append([]string{exe}, o.NodeCommand[1:]...)
	if o.Baseline != "" {
		// The earlier binary's own gateway binary, if it has one.
		sh.baselineCmd = CommandsFor(o.Baseline).Node
		exe := filepath.Join(sh.dir, "baseline-"+filepath.Base(sh.baselineCmd[0]))
		if err := copyFile(sh.baselineCmd[0], exe, 0o755); err != nil {
			return nil, fmt.Errorf("copying the baseline binary for the unprivileged user: %w", err)
		}
		sh.baselineUnpriv = append([]string{exe}, sh.baselineCmd[1:]...)
	}
	if err := netns.In(sh.b, func() (err error) {
		sh.echo, err = net.ListenPacket("udp4", fmt.Sprintf("0.0.0.0:%d", echoPort))
		return err
	}); err != nil {
		return nil, fmt.Errorf("starting the UDP echo: %w", err)
	}
	// The echo's socket also carries the QUIC sink: quic-go hands it the
	// probes, which are not QUIC.
	if sh.sink, err = startQUICSink(sh.echo); err != nil {
		return nil, err
	}
	return sh, nil
}

// netemArgs are tc netem's arguments for a link: netem reorders only
// delayed packets (the reordered ones skip the delay), so reordering
// without a delay gets 1 ms.
func netemArgs(l Link) []string {
	delay := l.Delay
	if l.Reorder > 0 && delay < time.Millisecond {
		delay = time.Millisecond
	}
	args := []string{"limit", "100000"}
	if delay > 0 {
		args = append(args, "delay", fmt.Sprintf("%dus", delay.Microseconds()))
	}
	if l.Loss > 0 {
		args = append(args, "loss", fmt.Sprintf("%g%%", 100*l.Loss))
	}
	if l.Reorder > 0 {
		args = append(args, "reorder", fmt.Sprintf("%g%%", 100*l.Reorder))
	}
	return args
}

func (sh *shape) Close() {
	if sh.sink != nil {
		sh.sink.Close()
	}
	if sh.echo != nil {
		sh.echo.Close()
	}
	for _, ns := range []string{sh.a, sh.b} {
		_ = netns.Del(ns)
	}
	if sh.dir != "" {
		os.RemoveAll(sh.dir)
	}
}

// starter starts a command in namespace ns, as the unprivileged user if
// asked, killed if this process dies.
func starter(ns string, unpriv bool) func(*exec.Cmd) error {
	return func(cmd *exec.Cmd) error {
		cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if unpriv {
			// A change of UID away from root clears every capability.
			cmd.SysProcAttr.Credential = &syscall.Credential{Uid: unprivUID, Gid: unprivUID, Groups: []uint32{}}
			cmd.Dir = "/"
		}
		return netns.In(ns, cmd.Start)
	}
}

// gateway is one running end of a row: a node process or a wireguard-go.
type gateway struct {
	pid        int
	listenPort int
	tcp, udp   string // where the client reaches the far side (A only)
	stop       func()
	output     func() string
}

func (sh *shape) startEnd(ctx context.Context, e end, ns, ifname string, role string, priv keys.PrivateKey, peer keys.PublicKey, peerEndpoint string) (*gateway, error) {
	if e.kind == endTUN {
		return startTUN(ctx, e.wg, ns, ifname, role, priv, peer, peerEndpoint)
	}
	cmd := sh.nodeCmd
	switch {
	case e.baseline && e.unpriv:
		cmd = sh.baselineUnpriv
	case e.baseline:
		cmd = sh.baselineCmd
	case e.unpriv:
		cmd = sh.unprivCmd
	}
	impl := ImplTunnel
	if e.kind == endStock {
		impl = ImplStock
	}
	spec := node.Spec{Impl: impl, Role: role, PrivateKey: priv.Base64(), PeerKey: peer.String()}
	if role == node.RoleEKS {
		spec.PeerEndpoint = peerEndpoint
		spec.TCPTarget = fmt.Sprintf("127.0.0.1:%d", iperfPort)
		spec.UDPTarget = fmt.Sprintf("127.0.0.1:%d", echoPort)
	}
	n, err := startProcessNode(ctx, cmd, spec, starter(ns, e.unpriv))
	if err != nil {
		return nil, err
	}
	if e.unpriv {
		if err := checkUnprivileged(n.pid); err != nil {
			n.stop()
			return nil, err
		}
	}
	return &gateway{pid: n.pid, listenPort: n.ready.ListenPort, tcp: n.ready.TCPForward, udp: n.ready.UDPForward,
		stop: n.stop, output: n.output}, nil
}

// startTUN runs a wireguard-go binary on a kernel TUN device in ns and
// configures it through its UAPI socket (the private key never reaches a
// command line). As aks it listens; as eks it dials peerEndpoint.
func startTUN(ctx context.Context, bin, ns, ifname, role string, priv keys.PrivateKey, peer keys.PublicKey, peerEndpoint string) (*gateway, error) {
	sock := filepath.Join("/var/run/wireguard", ifname+".sock")
	_ = os.Remove(sock)
	cmd := exec.Command(bin, "-f", ifname)
	cmd.Env = append(os.Environ(), "WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1", "LOG_LEVEL=error")
	out := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := starter(ns, false)(cmd); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	g := &gateway{pid: cmd.Process.Pid, output: out.String, stop: func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}}
	fail := func(err error) (*gateway, error) {
		g.stop()
		return nil, fmt.Errorf("%s on %s: %w\n%s", filepath.Base(bin), ifname, err, out.String())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-exited:
			return fail(errors.New("exited before its UAPI socket appeared"))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(errors.New("no UAPI socket after 10 s"))
		}
	}
	self, other := node.AKSAddr, node.EKSAddr
	if role == node.RoleEKS {
		self, other = node.EKSAddr, node.AKSAddr
	}
	for _, args := range [][]string{
		{"-n", ns, "addr", "add", self + "/24", "dev", ifname},
		{"-n", ns, "link", "set", ifname, "mtu", strconv.Itoa(node.MTU), "up"},
	} {
		if o, err := netns.Output("ip", args...); err != nil {
			return fail(fmt.Errorf("ip %s: %v %s", strings.Join(args, " "), err, o))
		}
	}
	conf := fmt.Sprintf("private_key=%s\npublic_key=%s\nallowed_ip=%s/32\n", priv.UAPIHex(), peer.UAPIHex(), other)
	if role == node.RoleAKS {
		conf = fmt.Sprintf("private_key=%s\nlisten_port=%d\npublic_key=%s\nallowed_ip=%s/32\n", priv.UAPIHex(), anchorWG, peer.UAPIHex(), other)
		g.listenPort = anchorWG
		g.tcp = fmt.Sprintf("%s:%d", node.EKSAddr, iperfPort)
		g.udp = fmt.Sprintf("%s:%d", node.EKSAddr, echoPort)
	} else {
		conf += fmt.Sprintf("endpoint=%s\npersistent_keepalive_interval=25\n", peerEndpoint)
	}
	if err := uapiSet(sock, conf); err != nil {
		return fail(err)
	}
	return g, nil
}

// uapiSet sends one set operation to a wireguard-go UAPI socket.
func uapiSet(sock, conf string) error {
	c, err := net.DialTimeout("unix", sock, 5*time.Second)
	if err != nil {
		return fmt.Errorf("configuring through the UAPI socket: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "set=1\n"+conf+"\n"); err != nil {
		return fmt.Errorf("configuring through the UAPI socket: %w", err)
	}
	b := make([]byte, 256)
	var got []byte
	for !strings.Contains(string(got), "\n\n") {
		n, err := c.Read(b)
		got = append(got, b[:n]...)
		if err != nil {
			break
		}
	}
	if !strings.Contains(string(got), "errno=0\n") {
		return fmt.Errorf("configuring through the UAPI socket: answer %q", strings.TrimSpace(string(got)))
	}
	return nil
}

// measure runs one row once: starts both ends, times TCP for each stream
// count and UDP round trips, reads each end's CPU and peak memory, and
// stops them.
func (sh *shape) measure(ctx context.Context, o NetnsOptions, r netnsRow, s *rowSamples) error {
	keyA, err := keys.GeneratePrivateKey()
	if err != nil {
		return err
	}
	keyB, err := keys.GeneratePrivateKey()
	if err != nil {
		return err
	}
	a, err := sh.startEnd(ctx, r.a, sh.a, sh.ifA, node.RoleAKS, keyA, keyB.Public(), "")
	if err != nil {
		return fmt.Errorf("gateway A: %w", err)
	}
	defer a.stop()
	dial := fmt.Sprintf("%s:%d", vethA, a.listenPort)
	if sh.proxy {
		var link *netem
		err := netns.In(sh.b, func() (err error) {
			link, err = startNetem(sh.link, netip.AddrPortFrom(netip.MustParseAddr(vethA), uint16(a.listenPort)))
			return err
		})
		if err != nil {
			return fmt.Errorf("starting the emulated link: %w", err)
		}
		defer link.Close()
		dial = link.Addr()
	}
	b, err := sh.startEnd(ctx, r.b, sh.b, sh.ifB, node.RoleEKS, keyB, keyA.Public(), dial)
	if err != nil {
		return fmt.Errorf("gateway B: %w", err)
	}
	defer b.stop()
	outputs := func() string {
		var s string
		for _, g := range []*gateway{a, b} {
			if g.output != nil {
				if out := g.output(); out != "" {
					s += "\n" + out
				}
			}
		}
		return s
	}
	var c net.Conn
	if err := netns.In(sh.a, func() (err error) { c, err = net.Dial("udp4", a.udp); return err }); err != nil {
		return err
	}
	defer c.Close()
	// The first round trips wait for the handshake; the TCP runs must not.
	if _, _, err := udpRTTOn(ctx, c, a.udp, 10); err != nil {
		return fmt.Errorf("before the first run: %w%s", err, outputs())
	}
	host, port, _ := net.SplitHostPort(a.tcp)
	for idx, streams := range o.Streams {
		before := []time.Duration{cpuOf([]int{a.pid}), cpuOf([]int{b.pid})}
		dropsBefore := []uint64{sh.udpDrops(sh.a), sh.udpDrops(sh.b)}
		res, err := sh.iperf(ctx, host, port, streams, o.Duration)
		if err != nil {
			if idx == 0 {
				// A run that never finished is the worst stall; keep it.
				s.tcp[streams] = append(s.tcp[streams], 0)
				s.failures = append(s.failures, err.Error())
				continue
			}
			return fmt.Errorf("TCP, %d stream(s): %w%s", streams, err, outputs())
		}
		s.tcp[streams] = append(s.tcp[streams], res.bps)
		for i, ns := range []string{sh.a, sh.b} {
			s.gw[i].drops += sh.udpDrops(ns) - dropsBefore[i]
		}
		if idx == 0 && res.bytes > 0 {
			for i, g := range []*gateway{a, b} {
				used := cpuOf([]int{g.pid}) - before[i]
				s.gw[i].cpu = append(s.gw[i].cpu, used.Seconds()/(float64(res.bytes)/1e9))
			}
		}
	}
	if o.QUICFlows > 0 {
		if err := sh.fullLoad(ctx, o, host, port, a.udp, s); err != nil {
			return fmt.Errorf("%w%s", err, outputs())
		}
	}
	p50, p99, err := udpRTTOn(ctx, c, a.udp, o.RTTs)
	if err != nil {
		return fmt.Errorf("UDP round trips: %w%s", err, outputs())
	}
	s.p50, s.p99 = append(s.p50, p50), append(s.p99, p99)
	for i, g := range []*gateway{a, b} {
		if rss, err := peakRSS(g.pid); err == nil {
			s.gw[i].rss = max(s.gw[i].rss, rss)
		}
	}
	return nil
}

// fullLoad runs the most TCP streams with o.QUICFlows QUIC flows writing
// beside them, through the forward rules at host:port and udp, then one
// QUIC connection's bulk payloads alone.
func (sh *shape) fullLoad(ctx context.Context, o NetnsOptions, host, port, udp string, s *rowSamples) error {
	listen := func() (pc net.PacketConn, err error) {
		err = netns.In(sh.a, func() (err error) {
			pc, err = net.ListenPacket("udp4", "0.0.0.0:0")
			return err
		})
		return pc, err
	}
	flows, err := startQUICFlows(ctx, listen, udp, sh.sink.client, o.QUICFlows)
	if err != nil {
		return fmt.Errorf("full load: %w", err)
	}
	before, start := sh.sink.received.Load(), time.Now()
	res, err := sh.iperf(ctx, host, port, slices.Max(o.Streams), o.Duration)
	quicBytes, elapsed := sh.sink.received.Load()-before, time.Since(start)
	flows.Stop()
	if err != nil {
		return fmt.Errorf("full load, TCP beside %d QUIC flows: %w", o.QUICFlows, err)
	}
	bulk, err := quicBulk(ctx, listen, udp, sh.sink.client, o.Duration)
	if err != nil {
		return err
	}
	s.loadTCP = append(s.loadTCP, res.bps)
	s.loadQUIC = append(s.loadQUIC, float64(quicBytes)/elapsed.Seconds())
	s.quicBulk = append(s.quicBulk, bulk)
	return nil
}

// iperf runs one iperf3 test: a one-off server in B, the client in A.
func (sh *shape) iperf(ctx context.Context, host, port string, streams int, d time.Duration) (iperfResult, error) {
	ctx, cancel := context.WithTimeout(ctx, d+60*time.Second)
	defer cancel()
	srv := exec.Command("iperf3", "-s", "-1", "--forceflush", "-p", strconv.Itoa(iperfPort))
	srvOut := &lockedBuffer{}
	srv.Stdout, srv.Stderr = srvOut, srvOut
	if err := starter(sh.b, false)(srv); err != nil {
		return iperfResult{}, fmt.Errorf("starting the iperf3 server: %w", err)
	}
	srvDone := make(chan struct{})
	go func() { _ = srv.Wait(); close(srvDone) }()
	defer func() {
		_ = srv.Process.Kill()
		<-srvDone
	}()
	for !strings.Contains(srvOut.String(), "listening") {
		select {
		case <-srvDone:
			return iperfResult{}, fmt.Errorf("the iperf3 server exited: %s", srvOut.String())
		case <-ctx.Done():
			return iperfResult{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	cli := exec.CommandContext(ctx, "iperf3", "-c", host, "-p", port, "-t", strconv.Itoa(secs), "-P", strconv.Itoa(streams),
		"-J", "--connect-timeout", "10000")
	var out strings.Builder
	cli.Stdout = &out
	cli.Stderr = &out
	if err := starter(sh.a, false)(cli); err != nil {
		return iperfResult{}, fmt.Errorf("starting the iperf3 client: %w", err)
	}
	werr := cli.Wait()
	res, perr := parseIperf([]byte(out.String()))
	if perr != nil {
		if werr != nil {
			return iperfResult{}, fmt.Errorf("iperf3: %v: %w", werr, perr)
		}
		return iperfResult{}, perr
	}
	return res, nil
}

// checkUnprivileged confirms that a process runs as the unprivileged user
// with no effective capabilities: the row measures what it claims.
func checkUnprivileged(pid int) error {
	uids, err := procstat.Field(pid, "Uid")
	if err != nil {
		return err
	}
	capEff, err := procstat.Field(pid, "CapEff")
	if err != nil {
		return err
	}
	var uid string
	if f := strings.Fields(uids); len(f) > 1 {
		uid = f[1] // effective
	}
	if uid != strconv.Itoa(unprivUID) || strings.Trim(capEff, "0") != "" {
		return fmt.Errorf("unprivileged gateway runs as UID %s with capabilities %s", uid, capEff)
	}
	return nil
}

// udpDrops is the datagrams namespace ns's kernel dropped because a UDP
// socket's receive buffer was full (RcvbufErrors in /proc/net/snmp).
func (sh *shape) udpDrops(ns string) uint64 {
	var b []byte
	_ = netns.In(ns, func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/snmp")
		return err
	})
	return parseRcvbufErrors(string(b))
}
