package tunnel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"sync"

	"github.com/tunnel-dev/tunnel/tunnel/policy"
)

// Dial connects through the tunnel to a peer's tunnel address, such as
// "10.99.0.1:7000". network is "tcp", "tcp4", "tcp6", "udp", "udp4" or
// "udp6". Only peers' addresses can be dialled: nothing is routed anywhere
// else.
func (g *Gateway) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if !g.running() {
		return nil, fmt.Errorf("dial %s %s: %w", network, address, ErrNotRunning)
	}
	to, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: want a peer's tunnel address and port (an IP, not a name)", network, address)
	}
	to = netip.AddrPortFrom(to.Addr().Unmap(), to.Port())
	if g.peerOf(to.Addr()) == "" {
		return nil, fmt.Errorf("dial %s %s: %s is not a peer's tunnel address; the tunnel reaches only its peers", network, address, to.Addr())
	}
	proto, err := protoOfNetwork(network)
	if err != nil {
		return nil, fmt.Errorf("dial %s %s: %w", network, address, err)
	}
	remove := g.filter.AddRemote(policy.Remote{Proto: proto, Addr: to})
	var c net.Conn
	if proto == policy.ProtoTCP {
		c, err = g.ns.DialTCP(ctx, to)
	} else {
		c, err = g.dialUDP(to)
	}
	if err != nil {
		remove()
		return nil, err
	}
	return &closeHookConn{Conn: c, hook: remove}, nil
}

// Listen listens on the gateway's tunnel address: address is ":port" or
// "tunnelIP:port". Every configured peer may connect; the port must not be
// one an expose rule already holds.
func (g *Gateway) Listen(network, address string) (net.Listener, error) {
	if network != "tcp" && network != "tcp4" && network != "tcp6" {
		return nil, fmt.Errorf("listen %s %s: network must be tcp", network, address)
	}
	at, closePort, err := g.openPort(policy.ProtoTCP, address)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	ln, err := g.ns.ListenTCP(at)
	if err != nil {
		closePort()
		return nil, err
	}
	return &closeHookListener{Listener: ln, hook: closePort}, nil
}

// ListenPacket opens a UDP socket on the gateway's tunnel address: address
// is ":port" or "tunnelIP:port". Every configured peer may send to it.
func (g *Gateway) ListenPacket(network, address string) (net.PacketConn, error) {
	if network != "udp" && network != "udp4" && network != "udp6" {
		return nil, fmt.Errorf("listen %s %s: network must be udp", network, address)
	}
	at, closePort, err := g.openPort(policy.ProtoUDP, address)
	if err != nil {
		return nil, fmt.Errorf("listen %s %s: %w", network, address, err)
	}
	pc, err := g.listenUDP(at)
	if err != nil {
		closePort()
		return nil, err
	}
	return &closeHookPacketConn{PacketConn: pc, hook: closePort}, nil
}

func (g *Gateway) openPort(proto uint8, address string) (netip.AddrPort, func(), error) {
	if !g.running() {
		return netip.AddrPort{}, nil, ErrNotRunning
	}
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, nil, fmt.Errorf("want a port between 1 and 65535, got %q", portStr)
	}
	own := g.Config().Interface.Addresses
	addr := own[0]
	if host != "" {
		a, err := netip.ParseAddr(host)
		if err != nil || !slices.Contains(own, a.Unmap()) {
			return netip.AddrPort{}, nil, fmt.Errorf("%s is not this gateway's tunnel address (%v)", host, own)
		}
		addr = a.Unmap()
	}
	var allowed []netip.Prefix
	for _, p := range g.Config().Peers {
		allowed = append(allowed, p.AllowedIPs...)
	}
	closePort, err := g.filter.OpenPort(policy.Port{Rule: "listen/" + portStr, Proto: proto, Port: uint16(port), Allowed: allowed})
	if err != nil {
		return netip.AddrPort{}, nil, err
	}
	return netip.AddrPortFrom(addr, uint16(port)), closePort, nil
}

// peerOf names the peer owning a tunnel address, or "".
func (g *Gateway) peerOf(a netip.Addr) string {
	for _, p := range g.Config().Peers {
		for _, pfx := range p.AllowedIPs {
			if pfx.Contains(a) {
				return p.Name
			}
		}
	}
	return ""
}

func protoOfNetwork(network string) (uint8, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
		return policy.ProtoTCP, nil
	case "udp", "udp4", "udp6":
		return policy.ProtoUDP, nil
	}
	return 0, fmt.Errorf("unsupported network %q (tcp or udp)", network)
}

type closeHookConn struct {
	net.Conn
	hook func()
	once sync.Once
}

func (c *closeHookConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.hook)
	return err
}

// CloseWrite half-closes a TCP connection.
func (c *closeHookConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return fmt.Errorf("close write: not a TCP connection")
}

type closeHookListener struct {
	net.Listener
	hook func()
	once sync.Once
}

func (l *closeHookListener) Close() error {
	err := l.Listener.Close()
	l.once.Do(l.hook)
	return err
}

type closeHookPacketConn struct {
	net.PacketConn
	hook func()
	once sync.Once
}

func (c *closeHookPacketConn) Close() error {
	err := c.PacketConn.Close()
	c.once.Do(c.hook)
	return err
}
