//go:build !linux

package bind

import "net"

// Elsewhere than Linux there is no UDP_SEGMENT or UDP_GRO: the socket only
// gets its buffers, and sends and receives datagram by datagram.

const (
	socketBuffer = 7 << 20
	maxSegments  = 64
	maxCoalesced = 65535 - 8 - 40
)

var oobSize = 0

func tune(uc *net.UDPConn) (offload bool, err error) {
	_ = uc.SetReadBuffer(socketBuffer)
	_ = uc.SetWriteBuffer(socketBuffer)
	return false, nil
}

func putSegmentSize(oob []byte, _ uint16) []byte { return oob[:0] }

func parseControl([]byte) (segSize int, drops uint32, hasDrops bool) { return 0, 0, false }
