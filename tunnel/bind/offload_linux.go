package bind

import (
	"encoding/binary"
	"fmt"
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Socket tuning and UDP segmentation offload for the connected socket.
//
// Send: consecutive equal-sized WireGuard packets are coalesced into one
// buffer and sent with a UDP_SEGMENT control message: one system call and
// one trip through the kernel's stack for up to 64 datagrams. Receive:
// UDP_GRO lets the kernel hand back such a train whole, with its segment
// size, which we cut up again.

const (
	// socketBuffer is asked for each way; an unprivileged process gets at
	// most net.core.{r,w}mem_max.
	socketBuffer = 7 << 20
	// maxSegments is the kernel's UDP_MAX_SEGMENTS.
	maxSegments = 64
	// maxCoalesced bounds a coalesced send: an IPv6 UDP payload.
	maxCoalesced = 65535 - 8 - 40
)

// tune sizes the socket's buffers (a burst must not overflow the kernel's
// 208 KiB default, which loses packets TCP inside the tunnel then waits
// for) and turns on UDP GRO when the kernel has it. It reports whether
// segmentation offload can be used.
func tune(uc *net.UDPConn) (offload bool, err error) {
	rc, err := uc.SyscallConn()
	if err != nil {
		return false, fmt.Errorf("tuning UDP socket: %w", err)
	}
	cerr := rc.Control(func(fd uintptr) {
		s := int(fd)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUF, socketBuffer)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUF, socketBuffer)
		// Beyond rmem_max only with CAP_NET_ADMIN, which gateways lack;
		// harmless to try where it is held (tests, benchmarks).
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, socketBuffer)
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, socketBuffer)
		// Count drops: each receive reports the socket's overflow count.
		_ = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1)
		_, gsoErr := unix.GetsockoptInt(s, unix.SOL_UDP, unix.UDP_SEGMENT)
		groErr := unix.SetsockoptInt(s, unix.SOL_UDP, unix.UDP_GRO, 1)
		offload = gsoErr == nil && groErr == nil
	})
	if cerr != nil {
		return false, fmt.Errorf("tuning UDP socket: %w", cerr)
	}
	return offload, nil
}

// oobSize fits a UDP_GRO or UDP_SEGMENT message and an SO_RXQ_OVFL one.
var oobSize = unix.CmsgSpace(2) + unix.CmsgSpace(4)

// putSegmentSize writes a UDP_SEGMENT control message into oob.
func putSegmentSize(oob []byte, size uint16) []byte {
	n := unix.CmsgSpace(2)
	oob = oob[:n]
	clear(oob)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&oob[0]))
	h.Level = unix.SOL_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(oob[unix.CmsgLen(0):], size)
	return oob
}

// parseControl reads a received message's control data: the GRO segment
// size (0: one datagram) and the socket's drop counter, if present.
func parseControl(oob []byte) (segSize int, drops uint32, hasDrops bool) {
	for len(oob) >= unix.SizeofCmsghdr {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return segSize, drops, hasDrops
		}
		switch {
		case h.Level == unix.SOL_UDP && h.Type == unix.UDP_GRO && len(data) >= 2:
			segSize = int(binary.NativeEndian.Uint16(data))
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SO_RXQ_OVFL && len(data) >= 4:
			drops, hasDrops = binary.NativeEndian.Uint32(data), true
		}
		oob = rest
	}
	return segSize, drops, hasDrops
}
