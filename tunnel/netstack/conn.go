package netstack

import (
	"context"
	"fmt"
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
)

func fullAddr(ap netip.AddrPort) tcpip.FullAddress {
	var a tcpip.Address
	if ap.Addr().IsValid() && !ap.Addr().IsUnspecified() {
		a = tcpip.AddrFromSlice(ap.Addr().Unmap().AsSlice())
	}
	return tcpip.FullAddress{NIC: nicID, Addr: a, Port: ap.Port()}
}

// DialTCP connects to a peer's address through the tunnel.
func (ns *Stack) DialTCP(ctx context.Context, to netip.AddrPort) (*gonet.TCPConn, error) {
	c, err := gonet.DialContextTCP(ctx, ns.s, fullAddr(to), protoOf(to.Addr()))
	if err != nil {
		return nil, fmt.Errorf("dialling %s through the tunnel: %w", to, err)
	}
	return c, nil
}

// ListenTCP listens on one of the stack's addresses.
func (ns *Stack) ListenTCP(at netip.AddrPort) (*gonet.TCPListener, error) {
	l, err := gonet.ListenTCP(ns.s, fullAddr(at), protoOf(at.Addr()))
	if err != nil {
		return nil, fmt.Errorf("listening on tunnel address %s: %w", at, err)
	}
	return l, nil
}

// DialUDP opens a UDP socket connected to a peer's address through the
// tunnel, from an ephemeral port.
func (ns *Stack) DialUDP(to netip.AddrPort) (*gonet.UDPConn, error) {
	raddr := fullAddr(to)
	c, err := gonet.DialUDP(ns.s, nil, &raddr, protoOf(to.Addr()))
	if err != nil {
		return nil, fmt.Errorf("opening UDP to %s through the tunnel: %w", to, err)
	}
	return c, nil
}

// ListenUDP opens an unconnected UDP socket on one of the stack's addresses.
func (ns *Stack) ListenUDP(at netip.AddrPort) (*gonet.UDPConn, error) {
	laddr := fullAddr(at)
	c, err := gonet.DialUDP(ns.s, &laddr, nil, protoOf(at.Addr()))
	if err != nil {
		return nil, fmt.Errorf("listening on tunnel address udp %s: %w", at, err)
	}
	return c, nil
}
