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
	return b
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

func TestCheck(t *testing.T) {
	f := newTestFilter()
	f.AddRemote(Remote{Proto: ProtoTCP, Addr: ap(other, 443)})
	tests := []struct {
		name string
		pkt  []byte
		want Reason
	}{
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
	}
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
	})
}
