package audit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for Options.
const (
	DefaultTimeout     = time.Second
	DefaultConcurrency = 256
	// MaxConcurrency bounds the probes in flight however many are asked.
	MaxConcurrency = 4096
)

// CommonUDPPorts are probed on the target besides the expected ones: DNS,
// NTP, SNMP, IKE, WireGuard, VXLAN/Geneve, QUIC/HTTP3, mDNS.
var commonUDPPorts = []uint16{53, 123, 161, 443, 500, 4500, 4789, 5353, 6081, 8472, 51820}

// CommonUDPPorts returns the UDP ports probed on the target besides the
// expected ones.
func CommonUDPPorts() []uint16 { return slices.Clone(commonUDPPorts) }

// commonTCPPorts are probed on the other addresses (every port is probed
// on the target): SSH, DNS, HTTP(S), the Kubernetes API and kubelet, etcd,
// common service ports.
var commonTCPPorts = []uint16{22, 53, 80, 443, 2379, 2380, 3000, 5432, 6379, 6443, 8080, 8443, 9090, 10250, 10255}

// DialFunc dials from inside the tunnel.
type DialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Options say what to probe.
type Options struct {
	// Target is the peer's tunnel address.
	Target netip.Addr
	// TCPPorts are the TCP ports probed on Target; empty means 1–65535.
	TCPPorts []uint16
	// UDPPorts are probed on Target as well as CommonUDPPorts.
	UDPPorts []uint16
	// Others are further addresses, probed on the expected ports and a
	// list of common TCP ports, and on UDPPorts and CommonUDPPorts.
	Others []netip.Addr
	// Timeout bounds each probe; zero means DefaultTimeout.
	Timeout time.Duration
	// Concurrency bounds the probes in flight; zero means
	// DefaultConcurrency.
	Concurrency int
}

// Result is what one probe met.
type Result string

const (
	// Open: a TCP connection was established.
	Open Result = "open"
	// Refused: the peer answered a SYN with a reset. A silent policy
	// never resets, so this is an answer too.
	Refused Result = "refused"
	// Replied: a UDP datagram came back.
	Replied Result = "replied"
)

// Finding is one probe that got an answer.
type Finding struct {
	Protocol string         `json:"protocol"`
	Addr     netip.AddrPort `json:"addr"`
	Result   Result         `json:"result"`
}

func (f Finding) String() string { return fmt.Sprintf("%s/%s %s", f.Protocol, f.Addr, f.Result) }

// Report is what a Run probed and what answered.
type Report struct {
	Target    netip.Addr   `json:"target"`
	Others    []netip.Addr `json:"others,omitempty"`
	TCPProbes int          `json:"tcp_probes"`
	UDPProbes int          `json:"udp_probes"`
	// Failed counts probes that ended in a local error (not a timeout nor
	// a reset): the audit is incomplete if it is not zero.
	Failed   int       `json:"failed"`
	Answered []Finding `json:"answered"`
	// Silent are expected answers that did not come, even when probed
	// again with a longer timeout: a rule that is broken, or a service
	// that is down.
	Silent    []Expect      `json:"silent,omitempty"`
	Duration  time.Duration `json:"duration_ns"`
	FirstFail string        `json:"first_failure,omitempty"`
}

// Expect is a protocol and address allowed to answer.
type Expect struct {
	Protocol string         `json:"protocol"`
	Addr     netip.AddrPort `json:"addr"`
}

func (e Expect) String() string { return e.Protocol + "/" + e.Addr.String() }

// Unexpected are the findings that no Expect allows.
func (r Report) Unexpected(expected []Expect) []Finding {
	var out []Finding
	for _, f := range r.Answered {
		if !slices.Contains(expected, Expect{Protocol: f.Protocol, Addr: f.Addr}) {
			out = append(out, f)
		}
	}
	return out
}

// probe is one thing to try.
type probe struct {
	protocol string
	addr     netip.AddrPort
}

// plan lists the probes opts asks for, expected ports included: every TCP
// port (or TCPPorts) and the UDP ports on Target, and the short lists on
// Others.
func plan(opts Options, expected []Expect) []probe {
	var ps []probe
	seen := map[probe]bool{}
	add := func(proto string, a netip.Addr, port uint16) {
		p := probe{proto, netip.AddrPortFrom(a, port)}
		if port != 0 && !seen[p] {
			seen[p] = true
			ps = append(ps, p)
		}
	}
	if len(opts.TCPPorts) == 0 {
		for port := 1; port <= 65535; port++ {
			add("tcp", opts.Target, uint16(port))
		}
	}
	for _, port := range opts.TCPPorts {
		add("tcp", opts.Target, port)
	}
	udp := slices.Concat(opts.UDPPorts, commonUDPPorts)
	tcpOthers := slices.Clone(commonTCPPorts)
	for _, e := range expected {
		switch e.Protocol {
		case "udp":
			udp = append(udp, e.Addr.Port())
		case "tcp":
			tcpOthers = append(tcpOthers, e.Addr.Port())
		}
	}
	for _, port := range udp {
		add("udp", opts.Target, port)
	}
	for _, a := range opts.Others {
		for _, port := range tcpOthers {
			add("tcp", a, port)
		}
		for _, port := range udp {
			add("udp", a, port)
		}
	}
	return ps
}

// udpProbe is the payload sent to each UDP port: anything that answers a
// stranger's datagram answers this.
var udpProbe = []byte("tunnel audit probe\n")

// Run probes through dial and reports what answered. It stops early only
// when ctx ends (returning what it found so far and ctx's error).
func Run(ctx context.Context, dial DialFunc, opts Options, expected []Expect) (Report, error) {
	if !opts.Target.IsValid() {
		return Report{}, errors.New("audit: no target address")
	}
	timeout := cmp.Or(opts.Timeout, DefaultTimeout)
	conc := min(cmp.Or(opts.Concurrency, DefaultConcurrency), MaxConcurrency)
	start := time.Now()
	ps := plan(opts, expected)
	r := Report{Target: opts.Target, Others: opts.Others}
	var mu sync.Mutex // guards r
	work := make(chan probe)
	var wg sync.WaitGroup
	for range min(conc, len(ps)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				res, err := try(ctx, dial, p, timeout)
				mu.Lock()
				if p.protocol == "tcp" {
					r.TCPProbes++
				} else {
					r.UDPProbes++
				}
				switch {
				case res != "":
					r.Answered = append(r.Answered, Finding{Protocol: p.protocol, Addr: p.addr, Result: res})
				case err != nil && ctx.Err() == nil:
					r.Failed++
					if r.FirstFail == "" {
						r.FirstFail = fmt.Sprintf("%s/%s: %v", p.protocol, p.addr, err)
					}
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, p := range ps {
		select {
		case work <- p:
		case <-ctx.Done():
			break feed
		}
	}
	close(work)
	wg.Wait()
	r.recheck(ctx, dial, expected, 3*timeout)
	slices.SortFunc(r.Answered, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Protocol, b.Protocol), a.Addr.Compare(b.Addr))
	})
	r.Duration = time.Since(start)
	return r, ctx.Err()
}

// try runs one probe. A result of "" with a nil error is silence.
func try(ctx context.Context, dial DialFunc, p probe, timeout time.Duration) (Result, error) {
	pctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := dial(pctx, p.protocol, p.addr.String())
	if p.protocol == "tcp" {
		switch {
		case err == nil:
			c.Close()
			return Open, nil
		case errors.Is(err, syscall.ECONNREFUSED) || isRefused(err):
			return Refused, nil
		case pctx.Err() != nil || isTimeout(err):
			return "", nil
		}
		return "", err
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(udpProbe); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	if _, err := c.Read(buf); err == nil {
		return Replied, nil
	} else if isTimeout(err) || pctx.Err() != nil {
		return "", nil
	} else {
		// An ICMP error delivered as a read error is an answer too.
		return Refused, nil
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, context.DeadlineExceeded)
}

// isRefused recognises a reset from the netstack's dialer, which reports
// gVisor's error by its text ("connection was refused"), not as ECONNREFUSED.
func isRefused(err error) bool {
	s := err.Error()
	return strings.Contains(s, "connection was refused") || strings.Contains(s, "connection refused")
}

// recheck probes again, one by one and with timeout, the expected answers
// the sweep did not get (a loaded gateway may miss a reply within the
// sweep's timeout), and lists those still silent.
func (r *Report) recheck(ctx context.Context, dial DialFunc, expected []Expect, timeout time.Duration) {
	for _, e := range expected {
		if slices.ContainsFunc(r.Answered, func(f Finding) bool { return f.Protocol == e.Protocol && f.Addr == e.Addr }) {
			continue
		}
		if ctx.Err() != nil {
			return
		}
		res, _ := try(ctx, dial, probe{e.Protocol, e.Addr}, timeout)
		if res == "" {
			r.Silent = append(r.Silent, e)
			continue
		}
		r.Answered = append(r.Answered, Finding{Protocol: e.Protocol, Addr: e.Addr, Result: res})
	}
}
