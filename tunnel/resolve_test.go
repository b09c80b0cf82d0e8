package tunnel_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// dnsServer answers A queries for one name on loopback UDP with whatever
// address it holds, or NXDOMAIN while it holds none.
type dnsServer struct {
	name string
	addr atomic.Pointer[netip.Addr]
	pc   net.PacketConn
}

func startDNS(t *testing.T, name string) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsServer{name: name, pc: pc}
	t.Cleanup(func() { pc.Close() })
	go d.serve()
	return d
}

func (d *dnsServer) set(a netip.Addr) { d.addr.Store(&a) }

func (d *dnsServer) serve() {
	buf := make([]byte, 1500)
	for {
		n, from, err := d.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		var p dnsmessage.Parser
		h, err := p.Start(buf[:n])
		if err != nil {
			continue
		}
		q, err := p.Question()
		if err != nil {
			continue
		}
		resp := dnsmessage.Message{Header: dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true}, Questions: []dnsmessage.Question{q}}
		a := d.addr.Load()
		switch {
		case q.Name.String() != d.name+".":
			resp.RCode = dnsmessage.RCodeNameError
		case a == nil:
			resp.RCode = dnsmessage.RCodeNameError
		case q.Type == dnsmessage.TypeA:
			resp.Answers = []dnsmessage.Resource{{
				Header: dnsmessage.ResourceHeader{Name: q.Name, Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET, TTL: 1},
				Body:   &dnsmessage.AResource{A: a.As4()},
			}}
		}
		out, err := resp.Pack()
		if err != nil {
			continue
		}
		_, _ = d.pc.WriteTo(out, from)
	}
}

func (d *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var dd net.Dialer
		return dd.DialContext(ctx, "udp", d.pc.LocalAddr().String())
	}}
}

// A peer endpoint whose name does not resolve when the gateway starts (a
// load balancer still being provisioned) is resolved later, and the tunnel
// comes up without a restart.
func TestEndpointResolvedLater(t *testing.T) {
	dns := startDNS(t, "aks.gateway.test")
	p := &pair{eksKey: testutil.PrivateKey(t), aksKey: testutil.PrivateKey(t)}
	p.tcpEcho = tcpEchoServer(t)
	p.aks = startGateway(t, mustParse(t, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers: [{name: eks, publicKey: %s, allowedIPs: [10.99.0.1/32]}]
admin: {listen: "-"}
`, freeUDPPort(t), p.eksKey.Public())), p.aksKey)
	eksCfg := mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers: [{name: aks, publicKey: %s, endpoint: "aks.gateway.test:%d", persistentKeepalive: 1s, allowedIPs: [10.99.0.2/32]}]
expose: [{name: relay-tcp, protocol: tcp, port: 8000, target: %q, peers: [aks]}]
admin: {listen: "-"}
`, p.aksKey.Public(), p.aks.ListenPort(), p.tcpEcho))
	eks := &tunnel.Gateway{PrivateKey: &p.eksKey, Logger: testLogger(t), Resolver: dns.resolver()}
	tunnel.SetResolveTiming(eks, 100*time.Millisecond, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := eks.Start(ctx, eksCfg); err != nil {
		t.Fatalf("a name that does not resolve yet must not stop the gateway: %v", err)
	}
	defer eks.Close()
	if st := eks.Status(); st.Peers[0].Endpoint != "" {
		t.Fatalf("endpoint %q before the name resolved", st.Peers[0].Endpoint)
	}
	dns.set(netip.MustParseAddr("127.0.0.1"))
	testutil.Eventually(t, 10*time.Second, "the endpoint to be resolved and a handshake made", func() bool {
		st := eks.Status()
		return st.Peers[0].Endpoint != "" && !st.Peers[0].LastHandshake.IsZero()
	})
	c, err := p.aks.Dial(ctx, "tcp", "10.99.0.1:8000")
	if err != nil {
		t.Fatalf("through the tunnel: %v", err)
	}
	c.Close()
}
