package netstack

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
)

// udpPacket builds an IPv4 UDP packet; udpLen overrides the length field
// when not zero.
func udpPacket(src, dst netip.AddrPort, payload []byte, udpLen int) []byte {
	pkt := make([]byte, header.IPv4MinimumSize+header.UDPMinimumSize+len(payload))
	ip := header.IPv4(pkt)
	ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: uint8(header.UDPProtocolNumber),
		SrcAddr: tcpip.AddrFromSlice(src.Addr().AsSlice()), DstAddr: tcpip.AddrFromSlice(dst.Addr().AsSlice())})
	ip.SetChecksum(^ip.CalculateChecksum())
	n := header.UDPMinimumSize + len(payload)
	if udpLen != 0 {
		n = udpLen
	}
	header.UDP(pkt[header.IPv4MinimumSize:]).Encode(&header.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), Length: uint16(n)})
	copy(pkt[header.IPv4MinimumSize+header.UDPMinimumSize:], payload)
	return pkt
}

// nothingOut fails if the stack sends anything within d.
func nothingOut(t *testing.T, s *Stack, d time.Duration) {
	t.Helper()
	got := make(chan int, 1)
	go func() {
		bufs, sizes := [][]byte{make([]byte, 1500)}, []int{0}
		n, err := s.Read(bufs, sizes, 0)
		if err == nil && n > 0 {
			got <- sizes[0]
		}
		close(got)
	}()
	select {
	case n, ok := <-got:
		if ok {
			t.Fatalf("the stack sent a %d-byte packet", n)
		}
	case <-time.After(d):
	}
}

// A datagram no socket takes gets no ICMP port unreachable, and one for a
// fast-path port that is malformed is dropped there, not handed to gVisor
// (which answered it with an ICMP error).
func TestNoICMPErrors(t *testing.T) {
	for _, tt := range []struct {
		name  string
		bound bool
		len   int
	}{
		{"no socket", false, 0},
		{"fast-path port, UDP length short", true, 12},
		{"fast-path port, UDP length long", true, 60},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newStack(t, addrA, addrB, nil)
			at := netip.AddrPortFrom(addrA, 7000)
			if tt.bound {
				c, err := s.ListenUDPFast(at)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
			}
			before := s.UDPMalformedDrops()
			pkt := udpPacket(netip.AddrPortFrom(addrB, 5000), at, []byte("0123456789"), tt.len)
			if _, err := s.Write([][]byte{pkt}, 0); err != nil {
				t.Fatal(err)
			}
			nothingOut(t, s, 300*time.Millisecond)
			if tt.bound && s.UDPMalformedDrops() != before+1 {
				t.Errorf("malformed drops %d → %d, want one more", before, s.UDPMalformedDrops())
			}
		})
	}
}

// HasFlow knows a dialled connection's own ports and no others.
func TestHasFlow(t *testing.T) {
	a, _, _ := listeningPair(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := a.DialTCP(ctx, netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	lap := netip.MustParseAddrPort(c.LocalAddr().String())
	remote := netip.AddrPortFrom(addrB, 80)
	if !a.HasFlow(uint8(header.TCPProtocolNumber), lap, remote) {
		t.Errorf("no flow %s → %s", remote, lap)
	}
	if a.HasFlow(uint8(header.TCPProtocolNumber), netip.AddrPortFrom(addrA, lap.Port()+1), remote) {
		t.Error("a flow on a port nothing dialled from")
	}
	if a.HasFlow(uint8(header.TCPProtocolNumber), lap, netip.AddrPortFrom(addrB, 81)) {
		t.Error("a flow from a remote port nothing dialled")
	}
	u, err := a.DialUDPFast(netip.AddrPortFrom(addrB, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer u.Close()
	ul := netip.MustParseAddrPort(u.LocalAddr().String())
	if !a.HasFlow(uint8(header.UDPProtocolNumber), ul, netip.AddrPortFrom(addrB, 53)) {
		t.Error("no flow for a dialled fast-path socket")
	}
	if a.HasFlow(uint8(header.UDPProtocolNumber), ul, netip.AddrPortFrom(addrB, 54)) {
		t.Error("a connected fast-path socket takes another remote")
	}
}
