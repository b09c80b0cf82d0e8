package policy

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers the policy knows.
const (
	ProtoICMP   = 1
	ProtoTCP    = 6
	ProtoUDP    = 17
	ProtoICMPv6 = 58
)

// IPv6 extension headers Parse walks past.
const (
	ext6HopByHop = 0
	ext6Routing  = 43
	ext6Fragment = 44
	ext6DestOpts = 60
)

// Packet is what the policy reads from an IP header and the transport
// header after it.
type Packet struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	Fragment         bool
	// Options is set for an IPv4 header longer than 20 bytes or an IPv6
	// packet with an extension header other than a fragment header. The
	// policy drops both: no legitimate traffic here carries them, and the
	// fast path and gVisor would each treat them their own way.
	Options bool
	// PayloadOffset is where the transport header starts.
	PayloadOffset int
	// TransportLen is the length of the transport header and payload, as
	// the IP header gives it.
	TransportLen int
	// UDPLength is a UDP header's length field (zero for other protocols).
	UDPLength int
}

// Parse reads the headers of an IPv4 or IPv6 packet. It reports false for
// anything malformed: a short or inconsistent header, an unknown version, a
// TCP header whose data offset does not fit. Fragments parse (Fragment is
// set) without ports.
func Parse(b []byte) (Packet, bool) {
	var p Packet
	if len(b) < 1 {
		return p, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return p, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || total > len(b) {
			return p, false
		}
		flagsFrag := binary.BigEndian.Uint16(b[6:8])
		p.Fragment = flagsFrag&0x2000 != 0 || flagsFrag&0x1fff != 0
		p.Options = ihl > 20
		p.Proto = b[9]
		p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(b[16:20]))
		p.PayloadOffset = ihl
		return p, p.ports(b[:total])
	case 6:
		if len(b) < 40 {
			return p, false
		}
		payload := int(binary.BigEndian.Uint16(b[4:6]))
		if 40+payload > len(b) {
			return p, false
		}
		b = b[:40+payload]
		p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(b[24:40]))
		next := b[6]
		off := 40
		// Walk at most a few extension headers, to tell a fragment from
		// the rest; real traffic here has none.
		for range 8 {
			switch next {
			case ext6HopByHop, ext6Routing, ext6DestOpts:
				if len(b) < off+8 {
					return p, false
				}
				p.Options = true
				next = b[off]
				off += (int(b[off+1]) + 1) * 8
				if off > len(b) {
					return p, false
				}
				continue
			case ext6Fragment:
				p.Fragment = true
				p.Proto = ext6Fragment
				p.PayloadOffset = off
				return p, true
			}
			p.Proto = next
			p.PayloadOffset = off
			return p, p.ports(b)
		}
		return p, false
	}
	return p, false
}

// ports fills in the ports and lengths of a TCP or UDP packet that is not a
// fragment; b ends where the IP header says the packet does.
func (p *Packet) ports(b []byte) bool {
	if p.Fragment && (p.Proto == ProtoTCP || p.Proto == ProtoUDP) {
		return true
	}
	p.TransportLen = len(b) - p.PayloadOffset
	switch p.Proto {
	case ProtoTCP:
		if p.TransportLen < 20 {
			return false
		}
		if dataOff := int(b[p.PayloadOffset+12]>>4) * 4; dataOff < 20 || dataOff > p.TransportLen {
			return false
		}
	case ProtoUDP:
		if p.TransportLen < 8 {
			return false
		}
		p.UDPLength = int(binary.BigEndian.Uint16(b[p.PayloadOffset+4:]))
	default:
		return true
	}
	t := b[p.PayloadOffset:]
	p.SrcPort = binary.BigEndian.Uint16(t[0:2])
	p.DstPort = binary.BigEndian.Uint16(t[2:4])
	return true
}
