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

// Packet is what the policy reads from an IP header and the transport
// header after it.
type Packet struct {
	Src, Dst         netip.Addr
	Proto            uint8
	SrcPort, DstPort uint16
	Fragment         bool
	// PayloadOffset is where the transport header starts.
	PayloadOffset int
}

// Parse reads the headers of an IPv4 or IPv6 packet. It reports false for
// anything malformed: a short or inconsistent header, an unknown version.
// Fragments parse (Fragment is set) without ports.
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
		// Walk at most a few extension headers; real traffic here has none.
		for range 8 {
			switch next {
			case 0, 43, 60: // hop-by-hop, routing, destination options
				if len(b) < off+8 {
					return p, false
				}
				next = b[off]
				off += (int(b[off+1]) + 1) * 8
				if off > len(b) {
					return p, false
				}
				continue
			case 44: // fragment
				p.Fragment = true
				p.Proto = 44
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

// ports fills in the ports of a TCP or UDP packet that is not a fragment.
func (p *Packet) ports(b []byte) bool {
	if p.Fragment && (p.Proto == ProtoTCP || p.Proto == ProtoUDP) {
		return true
	}
	switch p.Proto {
	case ProtoTCP:
		if len(b) < p.PayloadOffset+20 {
			return false
		}
	case ProtoUDP:
		if len(b) < p.PayloadOffset+8 {
			return false
		}
	default:
		return true
	}
	t := b[p.PayloadOffset:]
	p.SrcPort = binary.BigEndian.Uint16(t[0:2])
	p.DstPort = binary.BigEndian.Uint16(t[2:4])
	return true
}
