package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/cli"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

type demoCmd struct {
	Rounds int `default:"1000" help:"UDP round trips to time."`
	cli.Logging
}

// Run starts two gateways on loopback, exposes an echo service behind one
// to the other's key only, and proves a round trip and the scope.
func (c *demoCmd) Run(ctx context.Context, env cli.Env) error {
	log := c.Logger(env.Stderr)
	out := env.Stdout
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()

	echo, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	defer echo.Close()
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := echo.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = echo.WriteTo(buf[:n], from)
		}
	}()
	fmt.Fprintf(out, "echo service (stands in for relay) on udp %s\n", echo.LocalAddr())

	eksKey, err := keys.GeneratePrivateKey()
	if err != nil {
		return err
	}
	aksKey, err := keys.GeneratePrivateKey()
	if err != nil {
		return err
	}
	eksAddr, aksAddr := netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.0.2")
	aks := &tunnel.Gateway{Logger: log, PrivateKey: &aksKey, Config: &config.Config{
		Interface: iface("aks", aksAddr),
		Peers:     []config.Peer{{Name: "eks", Key: eksKey.Public(), AllowedIPs: []netip.Prefix{netip.PrefixFrom(eksAddr, 32)}}},
		Forward:   []config.Forward{{Name: "relay", Protocol: config.UDP, Listen: "127.0.0.1:0", Peer: "eks", To: netip.AddrPortFrom(eksAddr, 7000)}},
		Limits:    limits(), Admin: config.Admin{Listen: config.Disabled},
	}}
	if err := aks.Start(ctx); err != nil {
		return err
	}
	defer aks.Close()
	eks := &tunnel.Gateway{Logger: log, PrivateKey: &eksKey, Config: &config.Config{
		Interface: iface("eks", eksAddr),
		Peers: []config.Peer{{Name: "aks", Key: aksKey.Public(), Endpoint: fmt.Sprintf("127.0.0.1:%d", aks.ListenPort()),
			PersistentKeepalive: 25 * time.Second, AllowedIPs: []netip.Prefix{netip.PrefixFrom(aksAddr, 32)}}},
		Expose: []config.Expose{{Name: "relay", Protocol: config.UDP, Port: 7000, Target: echo.LocalAddr().String(), Peers: []string{"aks"}}},
		Limits: limits(), Admin: config.Admin{Listen: config.Disabled},
	}}
	if err := eks.Start(ctx); err != nil {
		return err
	}
	defer eks.Close()
	fwd, _ := aks.ForwardAddr("relay")
	fmt.Fprintf(out, "gateway eks (key %s): exposes udp/7000 → echo, to peer aks only; dials aks at 127.0.0.1:%d\n", eksKey.Public().Fingerprint(), aks.ListenPort())
	fmt.Fprintf(out, "gateway aks (key %s): forwards udp %s → 10.99.0.1:7000 through the tunnel\n", aksKey.Public().Fingerprint(), fwd)

	conn, err := net.Dial("udp", fwd.String())
	if err != nil {
		return err
	}
	defer conn.Close()
	buf := make([]byte, 2048)
	var rtts []time.Duration
	for i := 0; i < c.Rounds && ctx.Err() == nil; i++ {
		msg := fmt.Appendf(nil, "job %d", i)
		start := time.Now()
		if _, err := conn.Write(msg); err != nil {
			return err
		}
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			if len(rtts) == 0 && i < 10 {
				continue // the first handshake is under way
			}
			return fmt.Errorf("round trip %d: %w", i, err)
		}
		if !bytes.Equal(buf[:n], msg) {
			return fmt.Errorf("round trip %d: echo %q, want %q", i, buf[:n], msg)
		}
		rtts = append(rtts, time.Since(start))
	}
	if len(rtts) == 0 {
		return fmt.Errorf("no round trip completed")
	}
	p50, p99 := percentile(rtts, 50), percentile(rtts, 99)
	fmt.Fprintf(out, "\n%d UDP round trips through the tunnel: p50 %v, p99 %v\n", len(rtts), p50, p99)

	// Scope: the same peer asking for another port gets nothing.
	sctx, scancel := context.WithTimeout(ctx, time.Second)
	defer scancel()
	if c, err := aks.Dial(sctx, "tcp", "10.99.0.1:7001"); err == nil {
		c.Close()
		return fmt.Errorf("scope: unexposed tcp/7001 answered")
	}
	if _, err := aks.Dial(sctx, "tcp", echo.LocalAddr().String()); err == nil {
		return fmt.Errorf("scope: the echo service's own address was reachable through the tunnel")
	}
	fmt.Fprintf(out, "scope: tcp/7001 on the tunnel address gets no answer; %s is not reachable through the tunnel\n", echo.LocalAddr())
	st := eks.Status()
	fmt.Fprintf(out, "eks refused at ingress: not_exposed=%d; rule relay carried %d B up, %d B down\n", st.Ingress["not_exposed"], st.Rules[0].BytesUp, st.Rules[0].BytesDown)
	fmt.Fprintln(out, "demo ok")
	return nil
}

func iface(name string, a netip.Addr) config.Interface {
	return config.Interface{Name: name, Addresses: []netip.Addr{a}, MTU: config.DefaultMTU, UAPIDir: config.Disabled}
}

func limits() config.Limits {
	return config.Limits{
		UDPIdleTimeout: config.DefaultUDPIdleTimeout, UDPMaxSessions: config.DefaultUDPMaxSessions,
		TCPDialTimeout: time.Second, TCPMaxConnections: config.DefaultTCPMaxConnections,
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
	return s[min(len(s)-1, len(s)*p/100)].Round(time.Microsecond)
}
