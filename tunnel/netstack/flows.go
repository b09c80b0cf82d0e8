package netstack

import (
	"net/netip"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/stack"
)

// HasFlow reports whether a socket of the stack would take a packet of the
// given IP protocol (TCP or UDP) from remote to local: a fast-path UDP
// socket bound there (connected to remote, or not connected), or a gVisor
// endpoint registered for that pair (a dialled or accepted connection, a
// connected socket, or a listener on local). The policy asks it before
// letting a dialled remote's reply in, so a remote can reach only the ports
// that talk to it.
func (ns *Stack) HasFlow(proto uint8, local, remote netip.AddrPort) bool {
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
	if proto == uint8(header.UDPProtocolNumber) {
		if c := ns.udp.lookup(local); c != nil {
			return !c.remote.IsValid() || c.remote == remote
		}
	}
	id := stack.TransportEndpointID{
		LocalPort:     local.Port(),
		LocalAddress:  tcpip.AddrFromSlice(local.Addr().AsSlice()),
		RemotePort:    remote.Port(),
		RemoteAddress: tcpip.AddrFromSlice(remote.Addr().AsSlice()),
	}
	return ns.s.FindTransportEndpoint(protoOf(local.Addr()), tcpip.TransportProtocolNumber(proto), id, nicID) != nil
}
