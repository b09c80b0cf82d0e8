package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteTable prints the report for people.
func (r *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "tunnel bench: %d CPUs, %s, %s, %s per measurement, median of %d\n",
		r.CPUs, r.Go, r.Shape, r.Duration, r.Repeats)
	if r.Link.Emulated() {
		fmt.Fprintf(w, "emulated link: %v one way (RTT %v), %.2g%% loss, %.2g%% reordered\n",
			r.Link.Delay, 2*r.Link.Delay, 100*r.Link.Loss, 100*r.Link.Reorder)
		if r.LinkEmulation != "" {
			fmt.Fprintf(w, "emulated by %s\n", r.LinkEmulation)
		}
	}
	streams := r.streams()
	if r.netns() {
		r.writeNetnsTable(w, streams)
		return
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	head := []string{"path"}
	for _, s := range streams {
		head = append(head, fmt.Sprintf("TCP %d stream%s", s, plural(s)))
	}
	head = append(head, "× stock", "UDP RTT p50", "p99", "CPU s/GB", "peak RSS")
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, res := range r.Results {
		row := []string{res.Variant.Name}
		if res.Err != "" {
			fmt.Fprintf(tw, "%s\tfailed: %s\n", res.Variant.Name, res.Err)
			continue
		}
		for _, s := range streams {
			row = append(row, fmt.Sprintf("%.0f MB/s", res.TCP[s]/1e6))
		}
		ratio := "-"
		if res.Ratio > 0 {
			ratio = fmt.Sprintf("%.2f×", res.Ratio)
		}
		cpu, rss := "-", "-"
		if res.CPUPerGB > 0 {
			cpu = fmt.Sprintf("%.2f", res.CPUPerGB)
		}
		if res.PeakRSS > 0 {
			rss = fmt.Sprintf("%.0f MiB", float64(res.PeakRSS)/(1<<20))
		}
		row = append(row, ratio, us(res.RTTp50), us(res.RTTp99), cpu, rss)
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	fmt.Fprintln(w, "CPU s/GB: CPU time of both gateways per GB carried (one stream); peak RSS: the larger gateway's.")
	for _, j := range r.Jobs {
		if j.Err != "" {
			fmt.Fprintf(w, "\nrelay jobs %s: failed: %s\n", j.Path, j.Err)
			continue
		}
		fmt.Fprintf(w, "\nrelay jobs %s (enqueue → lease → complete, %d in flight, durable): %.0f jobs/s; at half that load p50 %v, p99 %v",
			j.Path, j.InFlight, j.JobsPerSecond, j.P50.Round(10*time.Microsecond), j.P99.Round(10*time.Microsecond))
	}
	if len(r.Jobs) > 0 {
		fmt.Fprintln(w)
	}
	if f := r.Footprint; f != nil {
		fmt.Fprintf(w, "\nfootprint of a tunnel gateway process: start to ready %v; idle RSS %.1f MiB; per idle flow and gateway (%d flows): UDP %.1f KiB, TCP %.1f KiB\n",
			f.StartToReady.Round(100*time.Microsecond), float64(f.IdleRSS)/(1<<20), f.Flows, float64(f.PerUDPFlow)/1024, float64(f.PerTCPFlow)/1024)
	}
}

// netns reports whether this is a production-shape report.
func (r *Report) netns() bool {
	for _, res := range r.Results {
		if len(res.Gateways) > 0 {
			return true
		}
	}
	return false
}

func (r *Report) streams() []int {
	seen := map[int]bool{}
	var s []int
	for _, res := range r.Results {
		for n := range res.TCP {
			if !seen[n] {
				seen[n] = true
				s = append(s, n)
			}
		}
	}
	sort.Ints(s)
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func us(d time.Duration) string {
	return fmt.Sprintf("%d µs", d.Microseconds())
}

// WriteJSON prints the report for machines.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteSVG draws one-stream TCP throughput per path as a bar chart.
func (r *Report) WriteSVG(w io.Writer) error {
	streams := r.streams()
	if len(streams) == 0 {
		return fmt.Errorf("nothing to draw")
	}
	s := streams[0]
	var peak float64
	for _, res := range r.Results {
		peak = max(peak, res.TCP[s])
	}
	if peak == 0 {
		return fmt.Errorf("nothing to draw")
	}
	const barH, gap, left, width = 22, 8, 330, 420
	height := 50 + len(r.Results)*(barH+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="13">`+"\n", left+width+110, height)
	fmt.Fprintf(&b, `<text x="10" y="22" font-weight="bold">TCP, %d stream%s: MB/s (%d CPUs, %s)</text>`+"\n", s, plural(s), r.CPUs, html.EscapeString(r.Shape))
	for i, res := range r.Results {
		y := 40 + i*(barH+gap)
		v := res.TCP[s] / 1e6
		bw := int(float64(width) * res.TCP[s] / peak)
		color := "#4a7ab5"
		switch res.Variant.Impl {
		case ImplStock:
			color = "#b5654a"
		case ImplRaw, ImplAnchor:
			color = "#999999"
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+15, html.EscapeString(res.Variant.Name))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="%s"/>`+"\n", left, y, max(bw, 1), barH, color)
		label := fmt.Sprintf("%.0f", v)
		if res.Ratio > 0 {
			label += fmt.Sprintf(" (%.1f×)", res.Ratio)
		} else if res.AnchorRatio > 0 {
			label += fmt.Sprintf(" (%.2f× anchor)", res.AnchorRatio)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", left+max(bw, 1)+6, y+15, label)
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// Check fails when the tunnel's ratio to the stock baseline is below
// floor: the regression guard CI runs.
func (r *Report) Check(floor float64) error {
	for _, res := range r.Results {
		if res.Err != "" {
			return fmt.Errorf("%s: %s", res.Variant.Name, res.Err)
		}
	}
	for _, res := range r.Results {
		if res.Variant.Impl == ImplTunnel && res.Variant.Tuning == (Tunnel.Tuning) {
			if res.Ratio == 0 {
				return fmt.Errorf("no stock baseline to compare %q with", res.Variant.Name)
			}
			if res.Ratio < floor {
				return fmt.Errorf("%s carries %.2f× the stock netstack's throughput, below the floor of %.2f×", res.Variant.Name, res.Ratio, floor)
			}
			return nil
		}
	}
	return fmt.Errorf("no tunnel result to check")
}
