package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/bench/node"
)

// Variant is one path to measure.
type Variant struct {
	Name   string        `json:"name"`
	Impl   string        `json:"impl"` // "raw", ImplStock or ImplTunnel
	Tuning tunnel.Tuning `json:"tuning,omitzero"`
}

// Implementations: the two gateways a node runs, and the paths besides.
const (
	ImplTunnel  = node.ImplTunnel // this project's gateway
	ImplStock   = node.ImplStock  // wireguard-go's tun/netstack, forwarding the same way
	ImplRaw     = "raw"           // straight to the targets over loopback
	ImplThrough = "through"       // a tunnel someone else runs
)

// Standard variants.
var (
	Raw    = Variant{Name: "raw loopback", Impl: ImplRaw}
	Stock  = Variant{Name: "stock tun/netstack", Impl: ImplStock}
	Tunnel = Variant{Name: "tunnel", Impl: ImplTunnel}
)

// Levers are the tunnel with one lever off each: the before/after table.
func Levers() []Variant {
	return []Variant{
		{Name: "tunnel, no TCP GSO", Impl: ImplTunnel, Tuning: tunnel.Tuning{NoGSO: true}},
		{Name: "tunnel, no GRO", Impl: ImplTunnel, Tuning: tunnel.Tuning{NoGRO: true}},
		{Name: "tunnel, checksums verified", Impl: ImplTunnel, Tuning: tunnel.Tuning{VerifyChecksums: true}},
		{Name: "tunnel, no UDP GSO/GRO", Impl: ImplTunnel, Tuning: tunnel.Tuning{NoUDPOffload: true}},
		{Name: "tunnel, wireguard-go's bind", Impl: ImplTunnel, Tuning: tunnel.Tuning{DefaultBind: true}},
		{Name: "tunnel, UDP through gVisor", Impl: ImplTunnel, Tuning: tunnel.Tuning{NoFastUDP: true}},
		{Name: "tunnel, stock-like link (batch 1, queue 1024, no GSO/GRO)", Impl: ImplTunnel,
			Tuning: tunnel.Tuning{NoGSO: true, NoGRO: true, VerifyChecksums: true, NoFastUDP: true, BatchSize: 1, QueueLen: 1024}},
	}
}

// Options configure a run.
type Options struct {
	Variants []Variant
	// Duration of each TCP measurement.
	Duration time.Duration
	// Repeats of every measurement; medians are reported.
	Repeats int
	// Streams are the TCP stream counts to measure, such as 1 and 4.
	Streams []int
	// RTTs is how many UDP round trips to time.
	RTTs int
	Link Link
	// NodeCommand runs a node as a process (see Commands); empty runs
	// both gateways in this process.
	NodeCommand []string
	// ThroughTCP and ThroughUDP are a running tunnel's forward addresses
	// (whose far side runs `tunnel bench targets`), for Impl "through".
	ThroughTCP, ThroughUDP string
	// Footprint measures start-to-ready, idle memory and memory per idle
	// flow; it needs NodeCommand (processes) and GatewayCommand.
	Footprint bool
	// GatewayCommand runs a gateway from a config file (see Commands),
	// for the start-to-ready measurement.
	GatewayCommand []string
	// Flows is how many idle flows the footprint opens; default 500.
	Flows int
	// RelayExecutable, if set, adds relay's job throughput and latency,
	// direct and through the tunnel (needs NodeCommand).
	RelayExecutable string
	// JobsStore adds PostgreSQL rows to the jobs figures.
	JobsStore JobsStore
	Logger    *slog.Logger
	// Progress, if set, is told what is being measured.
	Progress func(string)
}

// Result is one variant's medians.
type Result struct {
	Variant Variant `json:"variant"`
	// TCP is bytes per second by stream count.
	TCP map[int]float64 `json:"tcp_bytes_per_second"`
	// Ratio is the one-stream TCP figure over the stock baseline's.
	Ratio     float64       `json:"ratio_to_stock,omitempty"`
	RTTp50    time.Duration `json:"udp_rtt_p50_ns"`
	RTTp99    time.Duration `json:"udp_rtt_p99_ns"`
	CPUPerGB  float64       `json:"cpu_seconds_per_gb,omitempty"`
	PeakRSS   uint64        `json:"peak_rss_bytes,omitempty"`
	InProcess bool          `json:"in_process,omitempty"`
	Err       string        `json:"error,omitempty"`

	// The production shape (RunNetns) also reports these.

	// AnchorRatio is the one-stream figure over the kernel-TUN anchor's.
	AnchorRatio float64 `json:"ratio_to_anchor,omitempty"`
	// Gateways are each end's CPU and memory: A (forward), B (expose).
	Gateways []GatewayUsage `json:"gateways,omitempty"`
	// Runs and Stalls count the one-stream runs and those below 10 % of
	// their median; OneStream is each of them, bytes per second.
	Runs         int       `json:"runs,omitempty"`
	Stalls       int       `json:"stalls"`
	OneStream    []float64 `json:"one_stream_runs,omitempty"`
	Unprivileged bool      `json:"unprivileged,omitempty"`
	// Full load: LoadTCP is the TCP figure of the most streams with
	// QUICFlows QUIC flows writing beside it, QUICLoad what those flows
	// carried; QUICBulk is one QUIC connection's 1 MiB payloads alone.
	// Bytes per second, medians.
	QUICFlows int     `json:"quic_flows,omitempty"`
	LoadTCP   float64 `json:"load_tcp_bytes_per_second,omitempty"`
	QUICLoad  float64 `json:"load_quic_bytes_per_second,omitempty"`
	QUICBulk  float64 `json:"quic_bulk_bytes_per_second,omitempty"`
}

// Report is a whole run.
type Report struct {
	Started  time.Time `json:"started"`
	CPUs     int       `json:"cpus"`
	Go       string    `json:"go"`
	Duration string    `json:"duration_per_measurement"`
	Repeats  int       `json:"repeats"`
	Link     Link      `json:"link"`
	// LinkEmulation says how the production shape emulated Link.
	LinkEmulation string   `json:"link_emulation,omitempty"`
	Shape         string   `json:"shape"`
	Results       []Result `json:"results"`
	// Footprint is set when asked for.
	Footprint *Footprint `json:"footprint,omitempty"`
	// Jobs is relay's job throughput and latency, when asked for.
	Jobs []JobsResult `json:"jobs,omitempty"`
}

// Run measures every variant, Repeats times each, round robin so that a
// noisy moment does not hit one variant only.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Repeats <= 0 {
		o.Repeats = 3
	}
	if len(o.Streams) == 0 {
		o.Streams = []int{1, 4}
	}
	if o.RTTs <= 0 {
		o.RTTs = 2000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
	rep := &Report{Started: time.Now(), CPUs: runtime.NumCPU(), Go: runtime.Version(),
		Duration: o.Duration.String(), Repeats: o.Repeats, Link: o.Link, Shape: "two gateway processes"}
	if len(o.NodeCommand) == 0 {
		rep.Shape = "two gateways in one process"
	}
	tg, err := startTargets()
	if err != nil {
		return nil, err
	}
	defer tg.Close()

	type samples struct {
		tcp      map[int][]float64
		p50, p99 []time.Duration
		cpu      []float64
		rss      uint64
		err      error
	}
	all := make([]samples, len(o.Variants))
	for i := range all {
		all[i].tcp = map[int][]float64{}
	}
	for r := range o.Repeats {
		for i, v := range o.Variants {
			if all[i].err != nil || ctx.Err() != nil {
				continue
			}
			o.Progress(fmt.Sprintf("round %d/%d: %s", r+1, o.Repeats, v.Name))
			m, err := measure(ctx, o, v, tg)
			if err != nil {
				all[i].err = err
				continue
			}
			for s, bps := range m.tcp {
				all[i].tcp[s] = append(all[i].tcp[s], bps)
			}
			all[i].p50 = append(all[i].p50, m.p50)
			all[i].p99 = append(all[i].p99, m.p99)
			if m.cpuPerGB > 0 {
				all[i].cpu = append(all[i].cpu, m.cpuPerGB)
			}
			all[i].rss = max(all[i].rss, m.rss)
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if o.Footprint {
		if len(o.NodeCommand) == 0 || len(o.GatewayCommand) == 0 {
			return nil, fmt.Errorf("the footprint needs gateways as processes")
		}
		if o.Flows <= 0 {
			o.Flows = 500
		}
		o.Progress("footprint: start to ready, idle memory, memory per idle flow")
		fp := &Footprint{Flows: o.Flows}
		var starts []float64
		var rss uint64
		for range o.Repeats {
			d, r, err := MeasureStartup(ctx, o.GatewayCommand)
			if err != nil {
				return nil, fmt.Errorf("footprint: %w", err)
			}
			starts = append(starts, float64(d))
			rss = max(rss, r)
		}
		fp.StartToReady, fp.IdleRSS = time.Duration(median(starts)), rss
		fp.PerUDPFlow, fp.PerTCPFlow, err = measureFlows(ctx, o, tg, o.Flows)
		if err != nil {
			return nil, fmt.Errorf("footprint: %w", err)
		}
		rep.Footprint = fp
	}
	if o.RelayExecutable != "" {
		if len(o.NodeCommand) == 0 {
			return nil, fmt.Errorf("relay's job figures need gateways as processes")
		}
		for _, tunnelled := range []bool{false, true} {
			o.Progress(fmt.Sprintf("relay jobs, through the tunnel: %v", tunnelled))
			rep.Jobs = append(rep.Jobs, measureJobs(ctx, o, o.RelayExecutable, tunnelled, "", 1))
		}
		if o.JobsStore.DSN != "" {
			for _, n := range o.JobsStore.Replicas {
				o.Progress(fmt.Sprintf("relay jobs on PostgreSQL, %d replica(s)", n))
				rep.Jobs = append(rep.Jobs, measureJobs(ctx, o, o.RelayExecutable, false, o.JobsStore.DSN, n))
			}
		}
	}
	var stock float64
	for i, v := range o.Variants {
		res := Result{Variant: v, TCP: map[int]float64{}, InProcess: len(o.NodeCommand) == 0 && v.Impl != ImplRaw && v.Impl != ImplThrough}
		s := all[i]
		if s.err != nil {
			res.Err = s.err.Error()
		} else {
			for n, xs := range s.tcp {
				res.TCP[n] = median(xs)
			}
			res.RTTp50, res.RTTp99 = medianDur(s.p50), medianDur(s.p99)
			if len(s.cpu) > 0 {
				res.CPUPerGB = median(s.cpu)
			}
			res.PeakRSS = s.rss
		}
		if v.Impl == ImplStock && res.Err == "" {
			stock = res.TCP[o.Streams[0]]
		}
		rep.Results = append(rep.Results, res)
	}
	if stock > 0 {
		for i := range rep.Results {
			if r := &rep.Results[i]; r.Err == "" && r.Variant.Impl != ImplRaw {
				r.Ratio = r.TCP[o.Streams[0]] / stock
			}
		}
	}
	return rep, nil
}

type measurement struct {
	tcp      map[int]float64
	p50, p99 time.Duration
	cpuPerGB float64
	rss      uint64
}

// measure sets up one variant's path, measures it, and tears it down.
func measure(ctx context.Context, o Options, v Variant, tg *targets) (measurement, error) {
	m := measurement{tcp: map[int]float64{}}
	tcpAddr, udpAddr := tg.tcp.Addr().String(), tg.udp.LocalAddr().String()
	var pids []int
	p := &path{}
	switch v.Impl {
	case ImplRaw:
	case ImplThrough:
		tcpAddr, udpAddr = o.ThroughTCP, o.ThroughUDP
	case ImplTunnel, ImplStock:
		var err error
		p, err = startPath(ctx, o, v, tcpAddr, udpAddr)
		if err != nil {
			return m, err
		}
		defer p.Close()
		tcpAddr, udpAddr = p.aks.ready.TCPForward, p.aks.ready.UDPForward
		pids = []int{p.eks.ready.PID, p.aks.ready.PID}
		if pids[0] == pids[1] {
			pids = pids[:1]
		}
	default:
		return m, fmt.Errorf("unknown implementation %q", v.Impl)
	}
	for idx, streams := range o.Streams {
		before := cpuOf(pids)
		bps, err := tcpThroughput(ctx, tcpAddr, streams, o.Duration)
		if err != nil {
			return m, fmt.Errorf("TCP, %d stream(s): %w%s", streams, err, p.output())
		}
		m.tcp[streams] = bps
		if idx == 0 && len(pids) > 0 && bps > 0 {
			used := cpuOf(pids) - before
			m.cpuPerGB = used.Seconds() / (bps * o.Duration.Seconds() / 1e9)
		}
	}
	p50, p99, err := udpRTT(ctx, udpAddr, o.RTTs)
	if err != nil {
		return m, fmt.Errorf("UDP round trips: %w%s", err, p.output())
	}
	m.p50, m.p99 = p50, p99
	for _, pid := range pids {
		if pid != os.Getpid() {
			if rss, err := peakRSS(pid); err == nil {
				m.rss = max(m.rss, rss)
			}
		}
	}
	return m, nil
}

func cpuOf(pids []int) time.Duration {
	var t time.Duration
	for _, pid := range pids {
		c, _ := procCPU(pid)
		t += c
	}
	return t
}

// path is two running nodes and, maybe, the emulated link between them.
type path struct {
	eks, aks *proc
	link     *netem
}

// output is what the path's node processes printed, for an error message.
func (p *path) output() string {
	var s string
	for _, n := range []*proc{p.eks, p.aks} {
		if n != nil && n.output != nil {
			if out := n.output(); out != "" {
				s += "\n" + out
			}
		}
	}
	return s
}

func (p *path) Close() {
	if p.eks != nil {
		p.eks.stop()
	}
	if p.link != nil {
		p.link.Close()
	}
	if p.aks != nil {
		p.aks.stop()
	}
}

func startPath(ctx context.Context, o Options, v Variant, tcpTarget, udpTarget string) (*path, error) {
	eksKey, err := keys.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	aksKey, err := keys.GeneratePrivateKey()
	if err != nil {
		return nil, err
	}
	start := func(spec node.Spec) (*proc, error) {
		if len(o.NodeCommand) > 0 {
			return startProcessNode(ctx, o.NodeCommand, spec, nil)
		}
		r, stop, err := node.Run(ctx, spec, o.Logger)
		if err != nil {
			return nil, err
		}
		return &proc{ready: r, stop: stop}, nil
	}
	p := &path{}
	p.aks, err = start(node.Spec{Impl: v.Impl, Role: node.RoleAKS, Tuning: v.Tuning, PrivateKey: aksKey.Base64(), PeerKey: eksKey.Public().String()})
	if err != nil {
		return nil, err
	}
	endpoint := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(p.aks.ready.ListenPort))
	dial := endpoint.String()
	if o.Link.Emulated() {
		p.link, err = startNetem(o.Link, endpoint)
		if err != nil {
			p.Close()
			return nil, err
		}
		dial = p.link.Addr()
	}
	p.eks, err = start(node.Spec{Impl: v.Impl, Role: node.RoleEKS, Tuning: v.Tuning, PrivateKey: eksKey.Base64(), PeerKey: aksKey.Public().String(),
		PeerEndpoint: dial, TCPTarget: tcpTarget, UDPTarget: udpTarget})
	if err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func medianDur(xs []time.Duration) time.Duration {
	s := append([]time.Duration(nil), xs...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}
