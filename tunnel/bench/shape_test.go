package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestStalls(t *testing.T) {
	for _, tc := range []struct {
		runs []float64
		want int
	}{
		{nil, 0},
		{[]float64{100, 110, 90}, 0},
		{[]float64{100, 110, 0.13, 90, 0.2}, 2},
		{[]float64{100, 0}, 1},
		{[]float64{100, 9, 100}, 1},
		{[]float64{100, 10, 100}, 0},
	} {
		if got := stalls(tc.runs); got != tc.want {
			t.Errorf("stalls(%v) = %d, want %d", tc.runs, got, tc.want)
		}
	}
}

func TestParseIperf(t *testing.T) {
	for _, tc := range []struct {
		in      string
		bps     float64
		wantErr string
	}{
		{`{"end":{"sum_received":{"bytes":2000,"seconds":2}}}`, 1000, ""},
		{`{"error":"unable to connect to server"}`, 0, "unable to connect"},
		{`{"end":{}}`, 0, "no received total"},
		{`not json`, 0, "reading iperf3"},
	} {
		got, err := parseIperf([]byte(tc.in))
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("%s: error %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got.bps != tc.bps {
			t.Errorf("%s: %v, %v", tc.in, got, err)
		}
	}
}

func FuzzParseIperf(f *testing.F) {
	f.Add([]byte(`{"end":{"sum_received":{"bytes":2000,"seconds":2}}}`))
	f.Add([]byte(`{"error":"x"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := parseIperf(b)
		if err == nil && (r.bps < 0 || r.bytes < 0) {
			t.Fatalf("negative figures %+v from %q", r, b)
		}
	})
}

func netnsReport() *Report {
	row := func(name, impl string, unpriv bool, bps float64, rssA, rssB uint64, stalls int) Result {
		return Result{Variant: Variant{Name: name, Impl: impl}, TCP: map[int]float64{1: bps}, Unprivileged: unpriv,
			Runs: 5, Stalls: stalls, Gateways: []GatewayUsage{
				{Name: "A", PeakRSS: rssA, Ours: impl == ImplTunnel || impl == ImplPeer, CPUPerGB: 3},
				{Name: "B", PeakRSS: rssB, Ours: impl == ImplTunnel, CPUPerGB: 4}}}
	}
	r := &Report{Results: []Result{
		row("anchor", ImplAnchor, false, 200e6, 300<<20, 300<<20, 3),
		row("tunnel (root)", ImplTunnel, false, 100e6, 50<<20, 60<<20, 0),
		row("tunnel (UID 65532)", ImplTunnel, true, 150e6, 70<<20, 40<<20, 0),
		row("stock", ImplStock, false, 50e6, 200<<20, 200<<20, 2),
		row("tunnel → Debian", ImplPeer, true, 60e6, 90<<20, 10<<20, 1),
	}}
	r.setAnchorRatios(1)
	return r
}

// The floors look at our gateways only: the anchor's and stock's memory
// and stalls are reported, not judged.
func TestCheckNetns(t *testing.T) {
	r := netnsReport()
	if got := r.Results[2].AnchorRatio; got != 0.75 {
		t.Fatalf("anchor ratio %v", got)
	}
	for _, tc := range []struct {
		name    string
		f       NetnsFloors
		wantErr string
	}{
		{"nothing asked", NetnsFloors{MaxStalls: -1}, ""},
		{"ratio met", NetnsFloors{MinAnchorRatio: 0.7, MaxStalls: -1}, ""},
		{"ratio missed", NetnsFloors{MinAnchorRatio: 0.8, MaxStalls: -1}, "0.75× the kernel-TUN anchor"},
		{"memory met", NetnsFloors{MaxRSS: 90 << 20, MaxStalls: -1}, ""},
		{"memory missed", NetnsFloors{MaxRSS: 64 << 20, MaxStalls: -1}, "gateway A peaked at 70 MiB"},
		{"stalls met", NetnsFloors{MaxStalls: 1}, ""},
		{"stalls missed", NetnsFloors{MaxStalls: 0}, "tunnel → Debian: 1 of 5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := r.CheckNetns(tc.f)
			if tc.wantErr == "" && err != nil {
				t.Fatal(err)
			}
			if tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
		})
	}
	failed := &Report{Results: []Result{{Variant: Variant{Name: "x", Impl: ImplTunnel}, Err: "broke"}}}
	if err := failed.CheckNetns(NetnsFloors{MaxStalls: -1}); err == nil {
		t.Fatal("a failed row passed the check")
	}
	var table bytes.Buffer
	r.WriteTable(&table)
	for _, want := range []string{"× anchor", "stalls", "0.75×", "1/5", "peak RSS A", "70 MiB"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
}

func TestNetemArgs(t *testing.T) {
	for _, tc := range []struct {
		l    Link
		want string
	}{
		{Link{Delay: 5e6}, "limit 100000 delay 5000us"},
		{Link{Loss: 0.01}, "limit 100000 loss 1%"},
		{Link{Reorder: 0.02}, "limit 100000 delay 1000us reorder 2%"},
	} {
		if got := strings.Join(netemArgs(tc.l), " "); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.l, got, tc.want)
		}
	}
}

func TestParseRcvbufErrors(t *testing.T) {
	snmp := "Ip: Forwarding DefaultTTL\nIp: 1 64\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors\nUdp: 10 0 3 12 7 0\nUdpLite: InDatagrams RcvbufErrors\nUdpLite: 0 99\n"
	if got := parseRcvbufErrors(snmp); got != 7 {
		t.Fatalf("RcvbufErrors = %d, want 7", got)
	}
	for _, bad := range []string{"", "Udp: RcvbufErrors\n", "Udp: A B\nUdp: 1 2\n"} {
		if got := parseRcvbufErrors(bad); got != 0 {
			t.Errorf("%q: %d", bad, got)
		}
	}
}

func FuzzParseRcvbufErrors(f *testing.F) {
	f.Add("Udp: RcvbufErrors\nUdp: 5\n")
	f.Fuzz(func(t *testing.T, s string) { _ = parseRcvbufErrors(s) })
}
