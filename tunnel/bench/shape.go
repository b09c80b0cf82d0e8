package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Implementations of the production shape's rows besides ours and stock.
const (
	ImplAnchor = "anchor" // wireguard-go on kernel TUN devices, kernel TCP at both ends
	ImplPeer   = "peer"   // our gateway towards a wireguard-go TUN peer
	// ImplBaseline rows run an earlier build's gateways, for before and
	// after in one run.
	ImplBaseline = "baseline"
)

// Ends a netns row can have.
const (
	endTunnel = "tunnel" // our gateway, `tunnel bench node`
	endStock  = "stock"  // wireguard-go's tun/netstack, `tunnel bench node`
	endTUN    = "tun"    // a wireguard-go binary on a kernel TUN device
)

type end struct {
	kind     string
	unpriv   bool
	baseline bool   // runs NetnsOptions.Baseline's nodes
	wg       string // endTUN: the wireguard-go binary
}

type netnsRow struct {
	name, impl string
	a, b       end
}

func netnsRows(o NetnsOptions) []netnsRow {
	tun := end{kind: endTUN, wg: o.WireGuardGo}
	rows := []netnsRow{
		{name: "wireguard-go on kernel TUN (root), kernel TCP", impl: ImplAnchor, a: tun, b: tun},
		{name: "tunnel gateways (root)", impl: ImplTunnel, a: end{kind: endTunnel}, b: end{kind: endTunnel}},
		{name: "tunnel gateways (UID 65532, no capabilities)", impl: ImplTunnel,
			a: end{kind: endTunnel, unpriv: true}, b: end{kind: endTunnel, unpriv: true}},
		{name: "stock tun/netstack forwarders (root)", impl: ImplStock, a: end{kind: endStock}, b: end{kind: endStock}},
	}
	for _, p := range o.Peers {
		rows = append(rows, netnsRow{name: "tunnel (UID 65532) → " + p.Name + " TUN peer", impl: ImplPeer,
			a: end{kind: endTunnel, unpriv: true}, b: end{kind: endTUN, wg: p.Path}})
	}
	if o.Baseline == "" {
		return rows
	}
	// Each row of our gateways again with the baseline's: before and
	// after in one run.
	var base []netnsRow
	for _, r := range rows {
		if r.a.kind != endTunnel {
			continue
		}
		r.name += ", baseline"
		r.impl = ImplBaseline
		for _, e := range []*end{&r.a, &r.b} {
			e.baseline = e.kind == endTunnel
		}
		base = append(base, r)
	}
	return append(rows, base...)
}

// NetnsOptions configure a run in the production shape (RunNetns).
type NetnsOptions struct {
	// Duration of each iperf3 run, in whole seconds (at least 1).
	Duration time.Duration
	// Repeats of every row; medians are reported, and the one-stream runs
	// are also counted for stalls.
	Repeats int
	// Streams are the TCP stream counts; the first is the one the ratios,
	// CPU and stall figures are taken from.
	Streams []int
	// RTTs is how many UDP round trips to time.
	RTTs int
	// Link is emulated with tc netem on both ends of the veth.
	Link Link
	// NodeCommand runs a gateway node (Commands.Node). Its binary is
	// copied where the unprivileged user can run it.
	NodeCommand []string
	// WireGuardGo is the anchor: wireguard-go built at the version go.mod
	// pins.
	WireGuardGo string
	// Peers add a row each: our unprivileged gateway towards this
	// wireguard-go on a kernel TUN device.
	Peers []Peer
	// Baseline, if set, is an earlier tunnel binary: every row with our
	// gateways is measured with its gateways too (CommandsFor: its
	// tunnel-gateway, if one lies beside it).
	Baseline string
	// Only keeps the rows whose name contains it.
	Only string
	// QUICFlows QUIC connections write through the tunnel beside the TCP
	// streams in a full-load run, after which one connection measures
	// QUIC bulk; zero means 64, negative none of it.
	QUICFlows int
	// Progress, if set, is told what is being measured.
	Progress func(string)
}

// Peer is a wireguard-go binary to run as the far end of a row.
type Peer struct {
	Name string `json:"name"`
	Path string `json:"path"`
}

func (o *NetnsOptions) defaults() {
	if o.Duration < time.Second {
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
	if o.QUICFlows == 0 {
		o.QUICFlows = 64
	}
	if o.Progress == nil {
		o.Progress = func(string) {}
	}
}

// GatewayUsage is what one end of a row cost.
type GatewayUsage struct {
	Name string `json:"name"` // "A" (the forward side) or "B" (the expose side)
	// CPUPerGB is its CPU time per GB carried, one stream, median.
	CPUPerGB float64 `json:"cpu_seconds_per_gb"`
	// PeakRSS is its VmHWM, the largest over the repeats.
	PeakRSS uint64 `json:"peak_rss_bytes"`
	// UDPDrops counts datagrams its namespace's kernel dropped on a full
	// UDP receive buffer, over every TCP run.
	UDPDrops uint64 `json:"udp_receive_drops"`
	// Ours says it is one of our gateways, which the memory floor covers.
	Ours bool `json:"ours,omitempty"`
}

// rowSamples collect a row's figures over the repeats.
type rowSamples struct {
	tcp      map[int][]float64
	p50, p99 []time.Duration
	gw       []gwSamples // A, B
	failures []string    // one-stream runs that never finished
	// Full load (TCP beside QUIC flows) and QUIC bulk, bytes per second.
	loadTCP, loadQUIC, quicBulk []float64
	err                         error
}

type gwSamples struct {
	cpu   []float64
	rss   uint64
	drops uint64
}

// stallFraction: a run below this fraction of its row's median stalled.
const stallFraction = 0.1

// stalls counts the runs below stallFraction of the median.
func stalls(runs []float64) int {
	if len(runs) == 0 {
		return 0
	}
	m := median(runs)
	n := 0
	for _, r := range runs {
		if r < stallFraction*m || r == 0 {
			n++
		}
	}
	return n
}

func (s *rowSamples) result(r netnsRow, first int) Result {
	res := Result{Variant: Variant{Name: r.name, Impl: r.impl}, TCP: map[int]float64{}, Unprivileged: r.a.unpriv}
	if s.err != nil {
		res.Err = s.err.Error()
		return res
	}
	if len(s.tcp[first]) == len(s.failures) {
		res.Err = "no run finished: " + strings.Join(s.failures, "; ")
		return res
	}
	for n, xs := range s.tcp {
		res.TCP[n] = median(xs)
	}
	res.Runs = len(s.tcp[first])
	res.OneStream = append([]float64(nil), s.tcp[first]...)
	res.Stalls = stalls(s.tcp[first])
	res.RTTp50, res.RTTp99 = medianDur(s.p50), medianDur(s.p99)
	if len(s.loadTCP) > 0 {
		res.LoadTCP, res.QUICLoad, res.QUICBulk = median(s.loadTCP), median(s.loadQUIC), median(s.quicBulk)
	}
	for i, e := range []end{r.a, r.b} {
		g := GatewayUsage{Name: string(rune('A' + i)), PeakRSS: s.gw[i].rss, UDPDrops: s.gw[i].drops, Ours: e.kind == endTunnel && !e.baseline}
		if len(s.gw[i].cpu) > 0 {
			g.CPUPerGB = median(s.gw[i].cpu)
		}
		res.Gateways = append(res.Gateways, g)
		res.CPUPerGB += g.CPUPerGB
		res.PeakRSS = max(res.PeakRSS, g.PeakRSS)
	}
	return res
}

func (r *Report) setAnchorRatios(first int) {
	var anchor float64
	for _, res := range r.Results {
		if res.Variant.Impl == ImplAnchor && res.Err == "" {
			anchor = res.TCP[first]
		}
	}
	if anchor == 0 {
		return
	}
	for i := range r.Results {
		if res := &r.Results[i]; res.Err == "" {
			res.AnchorRatio = res.TCP[first] / anchor
		}
	}
}

// parseIperf reads iperf3's JSON report (-J): what the server received.
func parseIperf(b []byte) (iperfResult, error) {
	var v struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				Bytes   int64   `json:"bytes"`
				Seconds float64 `json:"seconds"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return iperfResult{}, fmt.Errorf("reading iperf3's report: %w", err)
	}
	if v.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", v.Error)
	}
	s := v.End.SumReceived
	if s.Seconds <= 0 || s.Bytes < 0 {
		return iperfResult{}, errors.New("iperf3's report has no received total")
	}
	return iperfResult{bps: float64(s.Bytes) / s.Seconds, bytes: s.Bytes}, nil
}

type iperfResult struct {
	bps   float64 // bytes per second the server received
	bytes int64
}

// NetnsFloors are the production shape's regression guards.
type NetnsFloors struct {
	// MinAnchorRatio: our unprivileged gateways must carry at least this
	// many times the kernel-TUN anchor (one stream, same run).
	MinAnchorRatio float64
	// MaxRSS bounds the peak RSS of each of our gateways, in bytes.
	MaxRSS uint64
	// MaxStalls bounds the stalled runs of each row with our gateways; a
	// negative value checks nothing.
	MaxStalls int
}

// CheckNetns fails when a row of the production shape breaks a floor.
func (r *Report) CheckNetns(f NetnsFloors) error {
	var errs []error
	checkedRatio := false
	for _, res := range r.Results {
		if res.Err != "" {
			errs = append(errs, fmt.Errorf("%s: %s", res.Variant.Name, res.Err))
			continue
		}
		ours := false
		for _, g := range res.Gateways {
			if g.Ours {
				ours = true
				if f.MaxRSS > 0 && g.PeakRSS > f.MaxRSS {
					errs = append(errs, fmt.Errorf("%s: gateway %s peaked at %.0f MiB, above the bound of %.0f MiB",
						res.Variant.Name, g.Name, float64(g.PeakRSS)/(1<<20), float64(f.MaxRSS)/(1<<20)))
				}
			}
		}
		if ours && f.MaxStalls >= 0 && res.Stalls > f.MaxStalls {
			errs = append(errs, fmt.Errorf("%s: %d of %d one-stream runs stalled (below %.0f%% of the median), more than %d",
				res.Variant.Name, res.Stalls, res.Runs, 100*stallFraction, f.MaxStalls))
		}
		if f.MinAnchorRatio > 0 && res.Variant.Impl == ImplTunnel && res.Unprivileged {
			checkedRatio = true
			if res.AnchorRatio < f.MinAnchorRatio {
				errs = append(errs, fmt.Errorf("%s carries %.2f× the kernel-TUN anchor, below the floor of %.2f×",
					res.Variant.Name, res.AnchorRatio, f.MinAnchorRatio))
			}
		}
	}
	if f.MinAnchorRatio > 0 && !checkedRatio && len(errs) == 0 {
		errs = append(errs, errors.New("no unprivileged tunnel row with an anchor to compare it with"))
	}
	return errors.Join(errs...)
}

// writeNetnsTable prints a production-shape report.
func (r *Report) writeNetnsTable(w io.Writer, streams []int) {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := []string{"path"}
	for _, s := range streams {
		head = append(head, fmt.Sprintf("TCP %d stream%s", s, plural(s)))
	}
	head = append(head, "× anchor", "stalls", "UDP RTT p50", "p99", "CPU s/GB A", "B", "peak RSS A", "B", "UDP drops A", "B",
		"full load TCP", "QUIC", "QUIC bulk")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, res := range r.Results {
		if res.Err != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\n", res.Variant.Name, res.Err)
			continue
		}
		row := []string{res.Variant.Name}
		for _, s := range streams {
			row = append(row, fmt.Sprintf("%.0f MB/s", res.TCP[s]/1e6))
		}
		ratio := "-"
		if res.AnchorRatio > 0 {
			ratio = fmt.Sprintf("%.2f×", res.AnchorRatio)
		}
		row = append(row, ratio, fmt.Sprintf("%d/%d", res.Stalls, res.Runs), us(res.RTTp50), us(res.RTTp99))
		var cpu, rss, drops []string
		for _, g := range res.Gateways {
			cpu = append(cpu, fmt.Sprintf("%.2f", g.CPUPerGB))
			rss = append(rss, fmt.Sprintf("%.0f MiB", float64(g.PeakRSS)/(1<<20)))
			drops = append(drops, fmt.Sprint(g.UDPDrops))
		}
		row = append(append(append(row, cpu...), rss...), drops...)
		if res.LoadTCP > 0 {
			row = append(row, fmt.Sprintf("%.0f MB/s", res.LoadTCP/1e6), fmt.Sprintf("%.0f MB/s", res.QUICLoad/1e6),
				fmt.Sprintf("%.0f MB/s", res.QUICBulk/1e6))
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	fmt.Fprintf(w, "A: the client's side (forward rule), B: the server's (expose rule); CPU s/GB during the %d-stream runs; peak RSS is VmHWM over every run.\n", streams[0])
	fmt.Fprintln(w, "UDP drops: datagrams each namespace's kernel dropped on a full UDP receive buffer, over every TCP run.")
	for _, res := range r.Results {
		if res.QUICFlows > 0 {
			fmt.Fprintf(w, "full load: %d TCP streams with %d QUIC flows writing beside them (TCP, QUIC); QUIC bulk: one connection, 1 MiB payloads, each acknowledged.\n",
				slices.Max(streams), res.QUICFlows)
			break
		}
	}
	fmt.Fprintf(w, "stalls: %d-stream runs below %.0f%% of the row's median.\n", streams[0], 100*stallFraction)
	for _, res := range r.Results {
		if res.Stalls > 0 {
			var runs []string
			for _, x := range res.OneStream {
				runs = append(runs, fmt.Sprintf("%.1f", x/1e6))
			}
			fmt.Fprintf(w, "  %s, every run (MB/s): %s\n", res.Variant.Name, strings.Join(runs, " "))
		}
	}
}

// copyFile copies src to dst with mode perm.
func copyFile(src, dst string, perm os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// BuildWireGuardGo builds the anchor, wireguard-go at the version go.mod
// pins, into dir. It runs the go command in the module's source tree.
func BuildWireGuardGo(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "wireguard-go")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "golang.zx2c4.com/wireguard")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("building wireguard-go for the anchor (run from the source tree, or pass --wireguard-go): %v\n%s", err, out)
	}
	return bin, nil
}

// parseRcvbufErrors finds Udp's RcvbufErrors in /proc/net/snmp: a header
// line of names, then a line of values.
func parseRcvbufErrors(snmp string) uint64 {
	var names []string
	for _, line := range strings.Split(snmp, "\n") {
		rest, ok := strings.CutPrefix(line, "Udp: ")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if names == nil {
			names = f
			continue
		}
		for i, n := range names {
			if n == "RcvbufErrors" && i < len(f) {
				v, _ := strconv.ParseUint(f[i], 10, 64)
				return v
			}
		}
		return 0
	}
	return 0
}
