package netstack

import (
	"encoding/binary"
	"errors"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// TCP segmentation offload. With GSO the stack hands the link one TCP
// segment of up to 64 KiB instead of ~45 of MTU size: TCP runs once per
// 64 KiB, not once per packet. We cut it into MTU-sized packets here, where
// they are copied into wireguard-go's buffers anyway, as a NIC would.

// gsoMaxSize is the largest segment the stack may hand us.
const gsoMaxSize = 1<<16 - 1

var errGSOTooMany = errors.New("GSO segment needs more buffers than the batch has")

// segment cuts a GSO TCP packet (headers and payload, contiguous in pkt)
// into packets of at most gso.MSS payload bytes, written at offset into
// successive bufs. It returns how many it wrote.
func segment(pkt []byte, gso stack.GSO, bufs [][]byte, sizes []int, offset int) (int, error) {
	ipLen := int(gso.L3HdrLen)
	if len(pkt) < ipLen+header.TCPMinimumSize {
		return 0, errors.New("GSO packet shorter than its headers")
	}
	tcp := header.TCP(pkt[ipLen:])
	tcpLen := int(tcp.DataOffset())
	if tcpLen < header.TCPMinimumSize || ipLen+tcpLen > len(pkt) {
		return 0, errors.New("GSO packet with a bad TCP header")
	}
	hdrLen := ipLen + tcpLen
	payload := pkt[hdrLen:]
	mss := int(gso.MSS)
	if mss <= 0 {
		return 0, errors.New("GSO packet without an MSS")
	}
	count := (len(payload) + mss - 1) / mss
	if count == 0 {
		count = 1
	}
	if count > len(bufs) {
		return 0, errGSOTooMany
	}
	v4 := gso.Type == stack.GSOTCPv4
	var id uint16
	var src, dst tcpip.Address
	if v4 {
		ip := header.IPv4(pkt)
		id = ip.ID()
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	} else {
		ip := header.IPv6(pkt)
		src, dst = ip.SourceAddress(), ip.DestinationAddress()
	}
	seq := tcp.SequenceNumber()
	flags := tcp.Flags()
	for i := range count {
		start := i * mss
		end := min(start+mss, len(payload))
		chunk := payload[start:end]
		out := bufs[i][offset:]
		if len(out) < hdrLen+len(chunk) {
			return 0, errors.New("buffer too small for a GSO segment")
		}
		copy(out, pkt[:hdrLen])
		copy(out[hdrLen:], chunk)
		total := hdrLen + len(chunk)
		if v4 {
			ip := header.IPv4(out)
			ip.SetTotalLength(uint16(total))
			ip.SetID(id + uint16(i))
			ip.SetChecksum(0)
			ip.SetChecksum(^ip.CalculateChecksum())
		} else {
			binary.BigEndian.PutUint16(out[4:6], uint16(total-ipLen))
		}
		th := header.TCP(out[ipLen:])
		th.SetSequenceNumber(uint32(seq) + uint32(start))
		f := flags
		if i != count-1 {
			f &^= header.TCPFlagFin | header.TCPFlagPsh
		}
		if i != 0 {
			f &^= header.TCPFlagCwr
		}
		th.SetFlags(uint8(f))
		th.SetChecksum(0)
		xsum := header.PseudoHeaderChecksum(header.TCPProtocolNumber, src, dst, uint16(tcpLen+len(chunk)))
		xsum = checksum.Checksum(out[ipLen:total], xsum)
		th.SetChecksum(^xsum)
		sizes[i] = total
	}
	return count, nil
}
