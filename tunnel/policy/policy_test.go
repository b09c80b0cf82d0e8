package policy

import (
	"encoding/binary"
	"net/netip"
	"testing"
)

// build makes a minimal IPv4 or IPv6 packet with a transport header.
func build(proto uint8, src, dst netip.AddrPort, frag bool) []byte {
	thl := 8
	if proto == ProtoTCP {
		thl = 20
	}
	if src.Addr().Is4() {
		b := make([]byte, 20+thl)
		b[0] = 0x45
		binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
		if frag {
			binary.BigEndian.PutUint16(b[6:], 0x2000)
		}
		b[8] = 64
		b[9] = proto
		s, d := src.Addr().As4(), dst.Addr().As4()
		copy(b[12:], s[:])
		copy(b[16:], d[:])
		binary.BigEndian.PutUint16(b[20:], src.Port())
		binary.BigEndian.PutUint16(b[22:], dst.Port())
		transport(b[20:], proto)
		return b
	}
	b := make([]byte, 40+thl)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(thl))
	b[6] = proto
	b[7] = 64
	s, d := src.Addr().As16(), dst.Addr().As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	if frag {
		b[6] = 44
		b = append(b[:40], make([]byte, 8)...)
		b[40] = proto
		binary.BigEndian.PutUint16(b[4:], 8)
		return b
	}
	binary.BigEndian.PutUint16(b[40:], src.Port())
	binary.BigEndian.PutUint16(b[42:], dst.Port())
	transport(b[40:], proto)
	return b
}

// transport fills in a UDP length or a TCP data offset.
func transport(t []byte, proto uint8) {
	switch proto {
	case ProtoUDP:
		binary.BigEndian.PutUint16(t[4:], uint16(len(t)))
	case ProtoTCP:
		t[12] = 5 << 4
	}
}

// withIPv4Options inserts n*4 bytes of NOP options into an IPv4 packet.
func withIPv4Options(b []byte, n int) []byte {
	out := append(append(append([]byte{}, b[:20]...), make([]byte, 4*n)...), b[20:]...)
	for i := 20; i < 20+4*n; i++ {
		out[i] = 1 // NOP
	}
	out[0] = 0x40 | byte(5+n)
	binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	return out
}

// withIPv6Ext inserts an empty extension header of type ext before the
// transport header of an IPv6 packet.
func withIPv6Ext(b []byte, ext uint8) []byte {
	h := make([]byte, 8)
	h[0] = b[6]       // its next header is the transport's
	h[2], h[3] = 1, 4 // a PadN option filling the rest
	out := append(append(append([]byte{}, b[:40]...), h...), b[40:]...)
	out[6] = ext
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

// withTrailer appends n bytes to a packet, within its IP length but not
// its transport header's.
func withTrailer(b []byte, n int) []byte {
	out := append(append([]byte{}, b...), make([]byte, n)...)
	if out[0]>>4 == 4 {
		binary.BigEndian.PutUint16(out[2:], uint16(len(out)))
	} else {
		binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	}
	return out
}

// withUDPLength rewrites a UDP header's length field.
func withUDPLength(b []byte, n int) []byte {
	out := append([]byte{}, b...)
	off := 20
	if b[0]>>4 == 6 {
		off = 40
	}
	binary.BigEndian.PutUint16(out[off+4:], uint16(n))
	return out
}

var (
	us     = netip.MustParseAddr("10.99.0.1")
	us6    = netip.MustParseAddr("fd00::1")
	bunny  = netip.MustParseAddr("10.99.0.2")
	bunny6 = netip.MustParseAddr("fd00::2")
	other  = netip.MustParseAddr("10.99.0.3")
)

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func newTestFilter() *Filter {
	return New([]netip.Addr{us, us6}, []Port{
		{Rule: "relay", Proto: ProtoUDP, Port: 7000, Allowed: []netip.Prefix{netip.PrefixFrom(bunny, 32), netip.PrefixFrom(bunny6, 128)}},
		{Rule: "api", Proto: ProtoTCP, Port: 8080, Allowed: []netip.Prefix{netip.PrefixFrom(bunny, 32)}},
	})
}

type checkCase struct {
	name string
	pkt  []byte
	want Reason
}

// checkAll checks each packet and that its verdict was counted.
func checkAll(t *testing.T, f *Filter, tests []checkCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := f.Count(tt.want)
			if got := f.Check(tt.pkt); got != tt.want {
				t.Fatalf("Check = %v, want %v", got, tt.want)
			}
			if f.Count(tt.want) != before+1 {
				t.Fatalf("counter for %v did not move", tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	f := newTestFilter()
	f.AddRemote(Remote{Proto: ProtoTCP, Addr: ap(other, 443)})
	tests := []checkCase{
		{"exposed udp from allowed peer", build(ProtoUDP, ap(bunny, 40000), ap(us, 7000), false), Accept},
		{"exposed udp over v6", build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), false), Accept},
		{"exposed tcp from allowed peer", build(ProtoTCP, ap(bunny, 40000), ap(us, 8080), false), Accept},
		{"right port, wrong protocol", build(ProtoTCP, ap(bunny, 40000), ap(us, 7000), false), DropNotExposed},
		{"unexposed port", build(ProtoUDP, ap(bunny, 40000), ap(us, 7001), false), DropNotExposed},
		{"peer not on the rule", build(ProtoUDP, ap(other, 40000), ap(us, 7000), false), DropPeerNotAllowed},
		{"another destination (routing)", build(ProtoUDP, ap(bunny, 40000), ap(netip.MustParseAddr("10.0.0.5"), 7000), false), DropNotOurAddress},
		{"reply from a dialled remote", build(ProtoTCP, ap(other, 443), ap(us, 51000), false), Accept},
		{"same remote, other port", build(ProtoTCP, ap(other, 444), ap(us, 51000), false), DropNotExposed},
		{"same remote, other protocol", build(ProtoUDP, ap(other, 443), ap(us, 51000), false), DropNotExposed},
		{"icmp", build(ProtoICMP, ap(bunny, 0), ap(us, 0), false), DropICMP},
		{"icmpv6", build(ProtoICMPv6, ap(bunny6, 0), ap(us6, 0), false), DropICMP},
		{"gre", build(47, ap(bunny, 0), ap(us, 0), false), DropProtocol},
		{"v4 fragment", build(ProtoUDP, ap(bunny, 40000), ap(us, 7000), true), DropFragment},
		{"v6 fragment", build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), true), DropFragment},
		{"empty", nil, DropMalformed},
		{"truncated", build(ProtoUDP, ap(bunny, 1), ap(us, 7000), false)[:24], DropMalformed},
		{"version 5", append([]byte{0x50}, make([]byte, 40)...), DropMalformed},
		{"v4 options on a SYN", withIPv4Options(build(ProtoTCP, ap(bunny, 40000), ap(us, 8080), false), 1), DropIPOptions},
		{"v6 destination options before UDP", withIPv6Ext(build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), false), 60), DropIPOptions},
		{"v6 hop-by-hop before UDP", withIPv6Ext(build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), false), 0), DropIPOptions},
		{"v6 routing header before UDP", withIPv6Ext(build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), false), 43), DropIPOptions},
		{"udp length short of the datagram", withUDPLength(withTrailer(build(ProtoUDP, ap(bunny, 40000), ap(us, 7000), false), 2), 8), DropUDPLength},
		{"udp length past the datagram", withUDPLength(build(ProtoUDP, ap(bunny, 40000), ap(us, 7000), false), 20), DropUDPLength},
		{"udp length short over v6", withUDPLength(withTrailer(build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), false), 1), 8), DropUDPLength},
		{"tcp data offset past the packet", func() []byte {
			b := build(ProtoTCP, ap(bunny, 40000), ap(us, 8080), false)
			b[32] = 6 << 4
			return b
		}(), DropMalformed},
	}
	checkAll(t, f, tests)
	if got := f.Denied()["relay"]; got != 1 {
		t.Errorf("denied on relay = %d, want 1", got)
	}
}

func TestRemotesNestAndClose(t *testing.T) {
	f := newTestFilter()
	pkt := build(ProtoUDP, ap(other, 53), ap(us, 40000), false)
	r := Remote{Proto: ProtoUDP, Addr: ap(other, 53)}
	rm1 := f.AddRemote(r)
	rm2 := f.AddRemote(r)
	rm1()
	rm1() // idempotent
	if got := f.Check(pkt); got != Accept {
		t.Fatalf("with one holder left: %v", got)
	}
	rm2()
	if got := f.Check(pkt); got != DropNotExposed {
		t.Fatalf("after the last holder: %v", got)
	}
}

// A dialled remote reaches only the local ports the stack holds a flow on.
func TestRemoteNeedsAFlow(t *testing.T) {
	f := newTestFilter()
	f.AddRemote(Remote{Proto: ProtoTCP, Addr: ap(other, 443)})
	f.AddRemote(Remote{Proto: ProtoUDP, Addr: ap(other, 53)})
	type flow struct {
		proto         uint8
		local, remote netip.AddrPort
	}
	flows := map[flow]bool{{ProtoTCP, ap(us, 51000), ap(other, 443)}: true, {ProtoUDP, ap(us, 40000), ap(other, 53)}: true}
	f.SetFlowCheck(func(proto uint8, local, remote netip.AddrPort) bool { return flows[flow{proto, local, remote}] })
	tests := []checkCase{
		{"tcp reply to the dialling port", build(ProtoTCP, ap(other, 443), ap(us, 51000), false), Accept},
		{"tcp reply to another port", build(ProtoTCP, ap(other, 443), ap(us, 51001), false), DropNoFlow},
		{"udp reply to the dialling port", build(ProtoUDP, ap(other, 53), ap(us, 40000), false), Accept},
		{"udp reply to another port", build(ProtoUDP, ap(other, 53), ap(us, 40001), false), DropNoFlow},
		{"remote to an exposed port is judged by the rule", build(ProtoUDP, ap(other, 53), ap(us, 7000), false), DropPeerNotAllowed},
	}
	checkAll(t, f, tests)
}

func TestOpenPortAndSetPorts(t *testing.T) {
	f := newTestFilter()
	if _, err := f.OpenPort(Port{Rule: "x", Proto: ProtoUDP, Port: 7000}); err == nil {
		t.Fatal("opened a port a rule holds")
	}
	closePort, err := f.OpenPort(Port{Rule: "embedded", Proto: ProtoTCP, Port: 9000, Allowed: []netip.Prefix{netip.PrefixFrom(other, 32)}})
	if err != nil {
		t.Fatal(err)
	}
	pkt := build(ProtoTCP, ap(other, 1234), ap(us, 9000), false)
	if got := f.Check(pkt); got != Accept {
		t.Fatalf("opened port: %v", got)
	}
	// A reload keeps the dynamic port but drops a removed rule.
	f.SetPorts([]Port{{Rule: "relay", Proto: ProtoUDP, Port: 7000, Allowed: []netip.Prefix{netip.PrefixFrom(other, 32)}}})
	if got := f.Check(pkt); got != Accept {
		t.Fatalf("dynamic port after reload: %v", got)
	}
	if got := f.Check(build(ProtoTCP, ap(bunny, 1), ap(us, 8080), false)); got != DropNotExposed {
		t.Fatalf("removed rule still open: %v", got)
	}
	if got := f.Check(build(ProtoUDP, ap(bunny, 1), ap(us, 7000), false)); got != DropPeerNotAllowed {
		t.Fatalf("peer removed from rule: %v", got)
	}
	closePort()
	if got := f.Check(pkt); got != DropNotExposed {
		t.Fatalf("closed port: %v", got)
	}
}

func FuzzParse(f *testing.F) {
	f.Add(build(ProtoUDP, ap(bunny, 40000), ap(us, 7000), false))
	f.Add(build(ProtoTCP, ap(bunny6, 40000), ap(us6, 7000), false))
	f.Add(build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), true))
	f.Add([]byte{0x60, 0, 0, 0, 0, 8, 0, 64})
	f.Add(withIPv4Options(build(ProtoTCP, ap(bunny, 40000), ap(us, 8080), false), 2))
	f.Add(withIPv6Ext(build(ProtoUDP, ap(bunny6, 40000), ap(us6, 7000), false), 60))
	f.Add(withUDPLength(build(ProtoUDP, ap(bunny, 40000), ap(us, 7000), false), 9))
	filter := newTestFilter()
	f.Fuzz(func(t *testing.T, b []byte) {
		p, ok := Parse(b)
		r := filter.Check(b)
		if !ok && r != DropMalformed {
			t.Fatalf("unparsable packet got %v", r)
		}
		if r == Accept && (!ok || p.Fragment || (p.Proto != ProtoTCP && p.Proto != ProtoUDP)) {
			t.Fatalf("accepted %+v", p)
		}
		if r == Accept && p.Dst != us && p.Dst != us6 {
			t.Fatalf("accepted a packet for %v", p.Dst)
		}
		if r == Accept && (p.Options || p.Proto == ProtoUDP && p.UDPLength != p.TransportLen) {
			t.Fatalf("accepted options or a bad UDP length: %+v", p)
		}
		if ok && !p.Fragment && p.PayloadOffset+p.TransportLen > len(b) {
			t.Fatalf("transport runs past the buffer: %+v, %d bytes", p, len(b))
		}
	})
}
