package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/fileread"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/bench"
	"github.com/tunnel-dev/tunnel/tunnel/bench/node"
)

type benchCmd struct {
	Run     benchRunCmd     `cmd:"" default:"withargs" help:"Measure the tunnel beside raw loopback and stock tun/netstack (the default)."`
	Targets benchTargetsCmd `cmd:"" help:"Serve the benchmark's TCP sink and UDP echo, to measure through a tunnel that is already running."`
	Node    benchNodeCmd    `cmd:"" hidden:"" help:"Run one benchmark gateway (spec on standard input)."`
}

type benchRunCmd struct {
	Duration   time.Duration `default:"5s" help:"Length of each TCP measurement."`
	Repeats    int           `default:"3" help:"Repeats of every measurement; medians are reported."`
	Streams    []int         `default:"1,4" help:"TCP stream counts to measure."`
	RTTs       int           `name:"rtts" default:"2000" help:"UDP round trips to time."`
	Levers     bool          `help:"Also measure the tunnel with each performance lever off: the before/after table."`
	InProcess  bool          `help:"Run both gateways in this process instead of as two processes."`
	Delay      time.Duration `help:"Emulated one-way delay between the gateways (RTT is twice it)."`
	Loss       float64       `help:"Emulated loss, as a fraction (0.01 is 1%)."`
	Reorder    float64       `help:"Fraction of datagrams held back to arrive out of order."`
	ThroughTCP string        `name:"through-tcp" placeholder:"ADDR" help:"Measure through a running tunnel: its local TCP forward address (the far side runs 'tunnel bench targets')."`
	ThroughUDP string        `name:"through-udp" placeholder:"ADDR" help:"With --through-tcp: the tunnel's local UDP forward address."`
	JSON       bool          `help:"Print the report as JSON."`
	SVG        string        `type:"path" placeholder:"FILE" help:"Also write a bar chart of one-stream throughput."`
	MinRatio   float64       `name:"min-ratio" help:"Fail (exit 1) when the tunnel carries less than this many times the stock baseline: CI's regression guard."`
	Only       string        `placeholder:"TEXT" help:"Measure only the paths whose name contains TEXT."`
	Footprint  bool          `help:"Also measure a gateway process's start to ready, idle memory and memory per idle flow."`
	Flows      int           `default:"500" help:"Idle flows the footprint opens."`
	Jobs       bool          `help:"Also measure relay's jobs/s and latency, direct and through the tunnel (needs the relay binary beside this one, or --relay)."`
	Relay      string        `type:"path" placeholder:"FILE" help:"The relay binary for --jobs (default: relay beside this binary)."`
	Store      string        `enum:"embedded,postgres" default:"embedded" help:"With --jobs: also measure relay on PostgreSQL (postgres), beside the embedded store, in the same run. The database's DSN comes from $TUNNEL_BENCH_DSN or --store-file, never the command line; each run uses queues of its own."`
	StoreFile  string        `name:"store-file" type:"path" placeholder:"FILE" help:"With --store postgres: a file holding the DSN (postgres:// URL)."`
	Replicas   int           `default:"3" help:"With --store postgres: measure 1 and this many relay replicas sharing the database."`

	Netns          bool     `help:"Measure the production shape instead (root): two network namespaces joined by a veth pair, iperf3 at both ends, our gateways as root and as UID 65532, stock forwarders, and wireguard-go on kernel TUN devices as the anchor."`
	Peer           []string `placeholder:"NAME" help:"With --netns: also our unprivileged gateway towards a wireguard-go TUN peer: debian (/usr/bin/wireguard-go) or latest (the anchor's binary)."`
	WireGuardGo    string   `name:"wireguard-go" type:"path" placeholder:"FILE" help:"With --netns: the anchor's wireguard-go (default: built with go build at the version go.mod pins)."`
	MinAnchorRatio float64  `name:"min-anchor-ratio" help:"With --netns: fail (exit 1) when our unprivileged gateways carry less than this many times the anchor."`
	MaxRSS         int      `name:"max-rss" placeholder:"MIB" help:"With --netns: fail when a gateway of ours peaks above this many MiB."`
	MaxStalls      int      `name:"max-stalls" default:"-1" help:"With --netns: fail when a row with our gateways has more stalled one-stream runs than this (-1: no check)."`
	Baseline       string   `type:"path" placeholder:"FILE" help:"With --netns: also measure every row of our gateways with this earlier tunnel binary's: before and after in one run."`
	QUICFlows      int      `name:"quic-flows" default:"64" placeholder:"N" help:"With --netns: QUIC flows writing beside the most TCP streams in a full-load run, then one QUIC connection's 1 MiB payloads; 0: neither."`
	Profile        string   `type:"path" placeholder:"DIR" help:"Gateway processes write CPU and peak-heap profiles (pprof) into DIR."`
}

func (c *benchRunCmd) Run(ctx context.Context, env cli.Env) error {
	if c.Profile != "" {
		if err := os.MkdirAll(c.Profile, 0o777); err != nil {
			return cli.Usage(fmt.Errorf("--profile: %w", err))
		}
		// The unprivileged gateways write there too.
		if err := os.Chmod(c.Profile, 0o777); err != nil {
			return cli.Usage(fmt.Errorf("--profile: %w", err))
		}
		os.Setenv(node.ProfileEnv, c.Profile)
	}
	if c.Netns {
		return c.runNetns(ctx, env)
	}
	if len(c.Peer) > 0 || c.WireGuardGo != "" || c.Baseline != "" || c.MinAnchorRatio > 0 || c.MaxRSS > 0 || c.MaxStalls >= 0 {
		return cli.Usage(fmt.Errorf("--peer, --wireguard-go, --baseline, --min-anchor-ratio, --max-rss and --max-stalls need --netns"))
	}
	o := bench.Options{
		Duration: c.Duration, Repeats: c.Repeats, Streams: c.Streams, RTTs: c.RTTs,
		Link: bench.Link{Delay: c.Delay, Loss: c.Loss, Reorder: c.Reorder},
	}
	if c.Loss < 0 || c.Loss >= 1 || c.Reorder < 0 || c.Reorder >= 1 {
		return cli.Usage(fmt.Errorf("--loss and --reorder are fractions between 0 and 1"))
	}
	if c.ThroughTCP != "" {
		if c.ThroughUDP == "" {
			return cli.Usage(fmt.Errorf("--through-tcp needs --through-udp"))
		}
		o.ThroughTCP, o.ThroughUDP = c.ThroughTCP, c.ThroughUDP
		o.Variants = []bench.Variant{bench.Raw, {Name: "running tunnel", Impl: bench.ImplThrough}}
	} else {
		o.Variants = []bench.Variant{bench.Raw, bench.Stock, bench.Tunnel}
		if c.Levers {
			o.Variants = append(o.Variants, bench.Levers()...)
		}
	}
	if c.Only != "" {
		var kept []bench.Variant
		for _, v := range o.Variants {
			if strings.Contains(v.Name, c.Only) {
				kept = append(kept, v)
			}
		}
		if len(kept) == 0 {
			return cli.Usage(fmt.Errorf("--only %q matches no path", c.Only))
		}
		o.Variants = kept
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	if !c.InProcess {
		cmds := gatewayCommands(exe, env)
		o.NodeCommand, o.GatewayCommand = cmds.Node, cmds.Gateway
	}
	o.Footprint, o.Flows = c.Footprint, c.Flows
	if c.Jobs {
		if c.InProcess {
			return cli.Usage(fmt.Errorf("--jobs measures gateway processes; drop --in-process"))
		}
		relay := c.Relay
		if relay == "" {
			relay = filepath.Join(filepath.Dir(exe), "relay")
		}
		if _, err := os.Stat(relay); err != nil {
			return cli.Usage(fmt.Errorf("--jobs needs the relay binary: %v (build it with make build, or pass --relay)", err))
		}
		o.RelayExecutable = relay
		store, err := c.jobsStore()
		if err != nil {
			return err
		}
		o.JobsStore = store
	} else if c.Store != "embedded" || c.StoreFile != "" {
		return cli.Usage(fmt.Errorf("--store and --store-file need --jobs"))
	}
	if c.Footprint && c.InProcess {
		return cli.Usage(fmt.Errorf("--footprint measures gateway processes; drop --in-process"))
	}
	if !c.JSON {
		o.Progress = func(s string) { fmt.Fprintln(env.Stderr, "measuring:", s) }
	}
	rep, err := bench.Run(ctx, o)
	if err != nil {
		return err
	}
	if err := c.output(rep, env); err != nil {
		return err
	}
	return c.check(rep, env)
}

// output prints a report and writes its chart, as asked.
func (c *benchRunCmd) output(rep *bench.Report, env cli.Env) error {
	if c.JSON {
		if err := rep.WriteJSON(env.Stdout); err != nil {
			return err
		}
	} else {
		rep.WriteTable(env.Stdout)
	}
	if c.SVG == "" {
		return nil
	}
	f, err := os.CreateTemp("", "bench-*.svg")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := rep.WriteSVG(f); err != nil {
		f.Close()
		return err
	}
	f.Close()
	b, err := os.ReadFile(f.Name())
	if err != nil {
		return err
	}
	return keys.WriteFile(c.SVG, b, 0o644)
}

func (c *benchRunCmd) check(rep *bench.Report, env cli.Env) error {
	if c.MinRatio > 0 {
		if err := rep.Check(c.MinRatio); err != nil {
			return err
		}
		if !c.JSON {
			fmt.Fprintf(env.Stdout, "ratio check passed (floor %.2f×)\n", c.MinRatio)
		}
	}
	return nil
}

// runNetns measures the production shape: `tunnel bench --netns`.
func (c *benchRunCmd) runNetns(ctx context.Context, env cli.Env) error {
	floors := bench.NetnsFloors{MinAnchorRatio: c.MinAnchorRatio, MaxRSS: uint64(c.MaxRSS) << 20, MaxStalls: c.MaxStalls}
	if c.InProcess || c.Levers || c.Footprint || c.Jobs || c.ThroughTCP != "" || c.MinRatio > 0 {
		return cli.Usage(fmt.Errorf("--netns measures gateway processes in its own shape; drop --in-process, --levers, --footprint, --jobs, --through-tcp and --min-ratio"))
	}
	if c.Duration < time.Second || c.Duration%time.Second != 0 {
		return cli.Usage(fmt.Errorf("--duration: --netns runs iperf3 for whole seconds, got %v", c.Duration))
	}
	if c.MaxRSS < 0 {
		return cli.Usage(fmt.Errorf("--max-rss: a size in MiB, got %d", c.MaxRSS))
	}
	if err := bench.NetnsSupported(); err != nil {
		if floors != (bench.NetnsFloors{MaxStalls: -1}) {
			return fmt.Errorf("cannot check the floors: %w", err)
		}
		fmt.Fprintln(env.Stderr, "skipped:", err)
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	o := bench.NetnsOptions{
		Duration: c.Duration, Repeats: c.Repeats, Streams: c.Streams, RTTs: c.RTTs,
		Link:        bench.Link{Delay: c.Delay, Loss: c.Loss, Reorder: c.Reorder},
		NodeCommand: gatewayCommands(exe, env).Node, WireGuardGo: c.WireGuardGo, Only: c.Only, Baseline: c.Baseline,
		QUICFlows: c.QUICFlows,
	}
	if c.QUICFlows < 0 {
		return cli.Usage(fmt.Errorf("--quic-flows %d: want 0 or more", c.QUICFlows))
	}
	if c.QUICFlows == 0 {
		o.QUICFlows = -1
	}
	if c.Loss < 0 || c.Loss >= 1 || c.Reorder < 0 || c.Reorder >= 1 {
		return cli.Usage(fmt.Errorf("--loss and --reorder are fractions between 0 and 1"))
	}
	if o.WireGuardGo == "" {
		dir, err := os.MkdirTemp("", "tunnel-bench-wg-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if o.WireGuardGo, err = bench.BuildWireGuardGo(ctx, dir); err != nil {
			return err
		}
	}
	for _, p := range c.Peer {
		switch p {
		case "debian":
			o.Peers = append(o.Peers, bench.Peer{Name: "Debian wireguard-go", Path: "/usr/bin/wireguard-go"})
		case "latest":
			o.Peers = append(o.Peers, bench.Peer{Name: "latest wireguard-go", Path: o.WireGuardGo})
		default:
			return cli.Usage(fmt.Errorf("--peer %q: want debian or latest", p))
		}
	}
	if !c.JSON {
		o.Progress = func(s string) { fmt.Fprintln(env.Stderr, "measuring:", s) }
	}
	rep, err := bench.RunNetns(ctx, o)
	if err != nil {
		return err
	}
	if err := c.output(rep, env); err != nil {
		return err
	}
	if err := rep.CheckNetns(floors); err != nil {
		return err
	}
	if floors != (bench.NetnsFloors{MaxStalls: -1}) && !c.JSON {
		var passed []string
		if c.MinAnchorRatio > 0 {
			passed = append(passed, fmt.Sprintf("anchor ratio ≥ %.2f×", c.MinAnchorRatio))
		}
		if c.MaxRSS > 0 {
			passed = append(passed, fmt.Sprintf("peak RSS ≤ %d MiB", c.MaxRSS))
		}
		if c.MaxStalls >= 0 {
			passed = append(passed, fmt.Sprintf("stalls ≤ %d", c.MaxStalls))
		}
		fmt.Fprintf(env.Stdout, "floors passed: %s\n", strings.Join(passed, ", "))
	}
	return nil
}

type benchTargetsCmd struct {
	TCP string `default:"127.0.0.1:5201" help:"Address of the TCP sink."`
	UDP string `default:"127.0.0.1:7000" help:"Address of the UDP echo."`
}

func (c *benchTargetsCmd) Run(ctx context.Context, env cli.Env) error {
	fmt.Fprintf(env.Stderr, "TCP sink on %s, UDP echo on %s\n", c.TCP, c.UDP)
	errc := make(chan error, 1)
	go func() { errc <- bench.ServeTargets(c.TCP, c.UDP) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		return nil
	}
}

type benchNodeCmd struct{}

func (c *benchNodeCmd) Run(ctx context.Context, env cli.Env) error {
	return node.Main(ctx, os.Stdin, env.Stdout)
}

// storeEnv names the environment variable holding --store postgres's DSN.
const storeEnv = "TUNNEL_BENCH_DSN"

// jobsStore is the PostgreSQL database --store postgres measures on, from
// --store-file or $TUNNEL_BENCH_DSN.
func (c *benchRunCmd) jobsStore() (bench.JobsStore, error) {
	if c.Store != "postgres" {
		if c.StoreFile != "" {
			return bench.JobsStore{}, cli.Usage(fmt.Errorf("--store-file needs --store postgres"))
		}
		return bench.JobsStore{}, nil
	}
	if c.Replicas < 1 || c.Replicas > 16 {
		return bench.JobsStore{}, cli.Usage(fmt.Errorf("--replicas %d: want 1 to 16", c.Replicas))
	}
	dsn := os.Getenv(storeEnv)
	if c.StoreFile != "" {
		b, err := fileread.Read(c.StoreFile, 64<<10)
		if err != nil {
			return bench.JobsStore{}, cli.Usage(fmt.Errorf("--store-file: %w", err))
		}
		dsn = strings.TrimSpace(string(b))
	}
	if dsn == "" {
		return bench.JobsStore{}, cli.Usage(fmt.Errorf("--store postgres needs the database's DSN in $%s or --store-file", storeEnv))
	}
	if !strings.HasPrefix(dsn, "postgres://") && !strings.HasPrefix(dsn, "postgresql://") {
		return bench.JobsStore{}, cli.Usage(fmt.Errorf("--store postgres: the DSN from $%s or --store-file is not a postgres:// URL", storeEnv))
	}
	replicas := []int{1}
	if c.Replicas > 1 {
		replicas = append(replicas, c.Replicas)
	}
	return bench.JobsStore{DSN: dsn, Replicas: replicas}, nil
}

// gatewayCommands runs the gateways of a measurement from the lean
// tunnel-gateway beside this binary, as a pod does, or says why the
// memory figures will be larger.
func gatewayCommands(exe string, env cli.Env) bench.Commands {
	cmds := bench.CommandsFor(exe)
	if !cmds.Lean {
		fmt.Fprintf(env.Stderr, "note: no %s beside %s (make build puts it there): the gateways run as this binary, and their resident sets include its larger image\n", bench.GatewayBinary, exe)
	}
	return cmds
}
