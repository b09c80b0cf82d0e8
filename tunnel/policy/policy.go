package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
)

// Reason says why a packet was dropped, or that it was accepted.
type Reason uint8

// Verdicts.
const (
	Accept Reason = iota
	DropMalformed
	DropFragment
	DropNotOurAddress
	DropICMP
	DropProtocol
	DropNotExposed
	DropPeerNotAllowed
	DropIPOptions
	DropUDPLength
	DropNoFlow
	numReasons
)

var reasonNames = [...]string{
	Accept:             "accepted",
	DropMalformed:      "malformed",
	DropFragment:       "fragment",
	DropNotOurAddress:  "not_our_address",
	DropICMP:           "icmp",
	DropProtocol:       "protocol",
	DropNotExposed:     "not_exposed",
	DropPeerNotAllowed: "peer_not_allowed",
	DropIPOptions:      "ip_options",
	DropUDPLength:      "udp_length",
	DropNoFlow:         "no_flow",
}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", r)
}

// Reasons lists every drop reason, for metrics that should show zeros.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := DropMalformed; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Port is an exposed port: who may reach it.
type Port struct {
	// Rule names the rule, for counting.
	Rule string
	// Proto is ProtoTCP or ProtoUDP.
	Proto uint8
	Port  uint16
	// Allowed are the source prefixes of the peers named on the rule.
	Allowed []netip.Prefix
}

// Remote is an address and port the gateway dials through the tunnel; its
// replies may come back.
type Remote struct {
	Proto uint8
	Addr  netip.AddrPort
}

type portKey struct {
	proto uint8
	port  uint16
}

type table struct {
	local   []netip.Addr
	ports   map[portKey]*entry
	remotes map[Remote]int // reference counts
}

type entry struct {
	Port
	denied atomic.Uint64
}

// FlowCheck reports whether the stack holds a socket for packets of proto
// from remote to local: a connection or connected socket it dialled (or an
// open listener on local). It must be safe to call concurrently.
type FlowCheck func(proto uint8, local, remote netip.AddrPort) bool

// Filter is the gateway's ingress policy. Its rules can be replaced while it
// runs (a config reload), and dialled remotes added and removed; Check is
// lock-free.
type Filter struct {
	mu      sync.Mutex // serialises writers
	t       atomic.Pointer[table]
	counts  [numReasons]atomic.Uint64
	dynamic map[portKey]*Port // ports opened by Listen, kept across SetRules
	flows   atomic.Pointer[FlowCheck]
}

// SetFlowCheck makes replies from dialled remotes pass only to a local port
// the stack holds a flow on. Without it, a dialled remote may reach any
// local port.
func (f *Filter) SetFlowCheck(fc FlowCheck) { f.flows.Store(&fc) }

// New returns a filter for the given local addresses and exposed ports.
func New(local []netip.Addr, ports []Port) *Filter {
	f := &Filter{dynamic: map[portKey]*Port{}}
	f.t.Store(&table{local: slices.Clone(local), ports: map[portKey]*entry{}, remotes: map[Remote]int{}})
	f.SetPorts(ports)
	return f
}

// SetPorts replaces the exposed ports (keeping dynamically opened ones and
// remotes). Counters of ports that stay are kept.
func (f *Filter) SetPorts(ports []Port) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := f.t.Load()
	nt := &table{local: old.local, ports: map[portKey]*entry{}, remotes: old.remotes}
	for _, p := range ports {
		k := portKey{p.Proto, p.Port}
		e := &entry{Port: p}
		e.Allowed = slices.Clone(p.Allowed)
		if prev, ok := old.ports[k]; ok && prev.Rule == p.Rule {
			e.denied.Store(prev.denied.Load())
		}
		nt.ports[k] = e
	}
	for k, p := range f.dynamic {
		if _, taken := nt.ports[k]; !taken {
			nt.ports[k] = &entry{Port: *p}
		}
	}
	f.t.Store(nt)
}

// OpenPort opens a port for the given sources until the returned function
// is called. It fails if a rule already holds the port.
func (f *Filter) OpenPort(p Port) (closePort func(), err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := portKey{p.Proto, p.Port}
	old := f.t.Load()
	if _, taken := old.ports[k]; taken {
		return nil, fmt.Errorf("port %d is already in use by rule %q", p.Port, old.ports[k].Rule)
	}
	f.dynamic[k] = &p
	f.replacePort(k, &entry{Port: p})
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.dynamic, k)
		f.replacePort(k, nil)
	}, nil
}

func (f *Filter) replacePort(k portKey, e *entry) {
	old := f.t.Load()
	nt := &table{local: old.local, ports: make(map[portKey]*entry, len(old.ports)+1), remotes: old.remotes}
	for kk, v := range old.ports {
		nt.ports[kk] = v
	}
	if e == nil {
		delete(nt.ports, k)
	} else {
		nt.ports[k] = e
	}
	f.t.Store(nt)
}

// AddRemote lets replies from r in until the returned function is called.
// Calls nest: a remote stays open while any caller holds it.
func (f *Filter) AddRemote(r Remote) (remove func()) {
	r.Addr = netip.AddrPortFrom(r.Addr.Addr().Unmap(), r.Addr.Port())
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setRemote(r, +1)
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.setRemote(r, -1)
		})
	}
}

func (f *Filter) setRemote(r Remote, delta int) {
	old := f.t.Load()
	rs := make(map[Remote]int, len(old.remotes)+1)
	for k, v := range old.remotes {
		rs[k] = v
	}
	rs[r] += delta
	if rs[r] <= 0 {
		delete(rs, r)
	}
	f.t.Store(&table{local: old.local, ports: old.ports, remotes: rs})
}

// Check decides one packet and counts the verdict.
func (f *Filter) Check(b []byte) Reason {
	r := f.decide(b)
	f.counts[r].Add(1)
	return r
}

func (f *Filter) decide(b []byte) Reason {
	p, ok := Parse(b)
	if !ok {
		return DropMalformed
	}
	t := f.t.Load()
	if !slices.Contains(t.local, p.Dst) {
		return DropNotOurAddress
	}
	if p.Fragment {
		return DropFragment
	}
	if p.Options {
		return DropIPOptions
	}
	switch p.Proto {
	case ProtoTCP, ProtoUDP:
	case ProtoICMP, ProtoICMPv6:
		return DropICMP
	default:
		return DropProtocol
	}
	// A datagram longer or shorter than its UDP header says is one the
	// fast path and gVisor would read differently: neither sees it.
	if p.Proto == ProtoUDP && p.UDPLength != p.TransportLen {
		return DropUDPLength
	}
	dialled := false
	if len(t.remotes) > 0 {
		src := netip.AddrPortFrom(p.Src, p.SrcPort)
		if _, ok := t.remotes[Remote{Proto: p.Proto, Addr: src}]; ok {
			fc := f.flows.Load()
			if fc == nil || (*fc)(p.Proto, netip.AddrPortFrom(p.Dst, p.DstPort), src) {
				return Accept
			}
			dialled = true
		}
	}
	e, ok := t.ports[portKey{p.Proto, p.DstPort}]
	if !ok {
		if dialled {
			return DropNoFlow
		}
		return DropNotExposed
	}
	for _, pfx := range e.Allowed {
		if pfx.Contains(p.Src) {
			return Accept
		}
	}
	e.denied.Add(1)
	return DropPeerNotAllowed
}

// Count returns how many packets got verdict r.
func (f *Filter) Count(r Reason) uint64 {
	if int(r) >= len(f.counts) {
		return 0
	}
	return f.counts[r].Load()
}

// Denied returns, per rule, how many packets reached its port from a source
// not allowed on it.
func (f *Filter) Denied() map[string]uint64 {
	m := map[string]uint64{}
	for _, e := range f.t.Load().ports {
		m[e.Rule] += e.denied.Load()
	}
	return m
}
