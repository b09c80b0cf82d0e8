package proto

import (
	"fmt"
	"time"

	"github.com/quic-go/quic-go"
)

// QUIC defaults that fit inside the tunnel.
const (
	// DefaultPacketSize is QUIC's UDP payload: the tunnel's 1420-byte
	// inner MTU less an IPv6 header (40) and a UDP header (8), so no QUIC
	// packet is fragmented inside the tunnel whichever IP version carries
	// it.
	DefaultPacketSize = 1420 - 48
	// DefaultKeepAlive is well below the gateway's 120 s UDP session
	// expiry, so an idle connection keeps its session.
	DefaultKeepAlive = 5 * time.Second
	// DefaultIdleTimeout closes a connection whose peer stopped answering:
	// a worker notices a relay that died (or a tunnel that broke) within it.
	DefaultIdleTimeout = 15 * time.Second
	// DefaultHandshakeTimeout bounds a handshake through a slow tunnel.
	DefaultHandshakeTimeout = 10 * time.Second
	// DefaultServerStreams bounds the calls one worker connection may have
	// open on relay at once: its long polls, heartbeats and settlements.
	DefaultServerStreams = 256
)

// QUICOptions tunes the QUIC settings; the zero value is the defaults
// above. Both ends should agree on the packet size.
type QUICOptions struct {
	// PacketSize is the UDP payload size QUIC uses (at least 1200); zero
	// means DefaultPacketSize.
	PacketSize uint16
	// PathMTUDiscovery lets QUIC probe for larger packets. Off by default:
	// inside the tunnel the size is known, and a probe that a netstack
	// fragments would "succeed" and double every packet.
	PathMTUDiscovery bool
	// KeepAlive is the PING interval; zero means DefaultKeepAlive and a
	// negative value turns keep-alives off.
	KeepAlive time.Duration
	// IdleTimeout: zero means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// HandshakeTimeout: zero means DefaultHandshakeTimeout.
	HandshakeTimeout time.Duration
	// MaxIncomingStreams is how many concurrent streams the peer may open;
	// zero means DefaultServerStreams on relay and none on a worker (relay
	// opens no streams).
	MaxIncomingStreams int64
}

// Validate reports options QUIC cannot use, naming the field.
func (o QUICOptions) Validate() error {
	if o.PacketSize != 0 && (o.PacketSize < 1200 || o.PacketSize > 1452) {
		return fmt.Errorf("QUIC packet size %d: want 1200 to 1452 bytes (the tunnel's inner MTU less 48)", o.PacketSize)
	}
	if o.IdleTimeout < 0 {
		return fmt.Errorf("QUIC idle timeout %s: must not be negative", o.IdleTimeout)
	}
	if o.HandshakeTimeout < 0 {
		return fmt.Errorf("QUIC handshake timeout %s: must not be negative", o.HandshakeTimeout)
	}
	idle := o.IdleTimeout
	if idle == 0 {
		idle = DefaultIdleTimeout
	}
	if o.KeepAlive > 0 && o.KeepAlive >= idle {
		return fmt.Errorf("QUIC keep-alive %s: must be shorter than the idle timeout %s", o.KeepAlive, idle)
	}
	return nil
}

// Config builds the quic.Config for relay (server true) or a worker.
func (o QUICOptions) Config(server bool) *quic.Config {
	c := &quic.Config{
		HandshakeIdleTimeout:    DefaultHandshakeTimeout,
		MaxIdleTimeout:          DefaultIdleTimeout,
		KeepAlivePeriod:         DefaultKeepAlive,
		InitialPacketSize:       DefaultPacketSize,
		DisablePathMTUDiscovery: !o.PathMTUDiscovery,
		MaxIncomingUniStreams:   -1,
		// relay opens no streams to a worker.
		MaxIncomingStreams: -1,
	}
	if server {
		c.MaxIncomingStreams = DefaultServerStreams
	}
	if o.MaxIncomingStreams != 0 {
		c.MaxIncomingStreams = o.MaxIncomingStreams
	}
	if o.PacketSize != 0 {
		c.InitialPacketSize = o.PacketSize
	}
	switch {
	case o.KeepAlive < 0:
		c.KeepAlivePeriod = 0
	case o.KeepAlive > 0:
		c.KeepAlivePeriod = o.KeepAlive
	}
	if o.IdleTimeout > 0 {
		c.MaxIdleTimeout = o.IdleTimeout
	}
	if o.HandshakeTimeout > 0 {
		c.HandshakeIdleTimeout = o.HandshakeTimeout
	}
	return c
}
