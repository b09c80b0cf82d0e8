package tunnel_test

import (
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

// WireGuard message types, the first byte of every datagram.
const (
	wgInitiation = 1
	wgResponse   = 2
	wgTransport  = 4
	// wgKeepaliveSize is a transport message with nothing in it: a
	// 16-byte header and a 16-byte tag.
	wgKeepaliveSize = 32
)

// A new tunnel survives losing any one datagram of its first handshake:
// the initiation, the response, or the keepalive with which the initiator
// confirms the session (the listener may not send over a session it
// answered until then). A client connects through the listening gateway
// before its peer has dialled it, as bunny may at start, and the dial
// through the tunnel must succeed within a 4 s dial timeout; WireGuard
// alone retries each of those losses only after 5 s.
func TestLostHandshakeDatagrams(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(fromDialler bool, msg []byte) bool
	}{
		{"initiation", func(fromDialler bool, msg []byte) bool {
			return fromDialler && msg[0] == wgInitiation
		}},
		{"response", func(fromDialler bool, msg []byte) bool {
			return !fromDialler && msg[0] == wgResponse
		}},
		{"confirming keepalive", func(fromDialler bool, msg []byte) bool {
			return fromDialler && msg[0] == wgTransport && len(msg) == wgKeepaliveSize
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { testLostHandshakeDatagram(t, tc.drop) })
	}
}

func testLostHandshakeDatagram(t *testing.T, drop func(fromDialler bool, msg []byte) bool) {
	lKey, dKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	port := freeUDPPort(t)
	listener := startGateway(t, mustParse(t, fmt.Sprintf(`
interface: {name: aks, privateKeyFile: unused, listenPort: %d, addresses: [10.99.0.2], uapiDir: "-"}
peers:
  - {name: eks, publicKey: %s, allowedIPs: [10.99.0.1/32]}
forward:
  - {name: relay-tcp, protocol: tcp, listen: "127.0.0.1:0", peer: eks, to: "10.99.0.1:8000"}
limits: {tcpDialTimeout: 4s}
admin: {listen: "-"}
`, port, dKey.Public())), lKey)
	addr, ok := listener.ForwardAddr("relay-tcp")
	if !ok {
		t.Fatal("no address for relay-tcp")
	}
	link := startLossyLink(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), drop)

	// The client first: the listener tries a handshake of its own and,
	// knowing no endpoint yet, cannot send it.
	msg := []byte("through a handshake that lost a datagram")
	c := sendEcho(t, addr.String(), msg)

	startGateway(t, mustParse(t, fmt.Sprintf(`
interface: {name: eks, privateKeyFile: unused, addresses: [10.99.0.1], uapiDir: "-"}
peers:
  - {name: aks, publicKey: %s, endpoint: "%s", persistentKeepalive: 25s, allowedIPs: [10.99.0.2/32]}
expose:
  - {name: relay-tcp, protocol: tcp, port: 8000, target: "%s", peers: [aks]}
admin: {listen: "-"}
`, lKey.Public(), link.addr(), tcpEchoServer(t))), dKey)

	expectEcho(t, c, msg, " (the dial through the tunnel did not finish within its 4 s)")
	if n := link.dropped.Load(); n != 1 {
		t.Fatalf("the link dropped %d datagrams, want 1: the test did not lose what it names", n)
	}
}

// lossyLink is a UDP relay on loopback between a dialling gateway and a
// listening one that drops the first datagram drop matches.
type lossyLink struct {
	front   *net.UDPConn // the dialler sends here
	back    *net.UDPConn // connected to the listener
	dropped atomic.Int32
}

func startLossyLink(t *testing.T, to netip.AddrPort, drop func(fromDialler bool, msg []byte) bool) *lossyLink {
	t.Helper()
	front, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	back, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		front.Close()
		t.Fatal(err)
	}
	l := &lossyLink{front: front, back: back}
	var (
		mu      sync.Mutex
		dialler netip.AddrPort
		wg      sync.WaitGroup
	)
	lose := func(fromDialler bool, msg []byte) bool {
		if len(msg) == 0 || l.dropped.Load() > 0 || !drop(fromDialler, msg) {
			return false
		}
		l.dropped.Add(1)
		return true
	}
	wg.Add(2)
	go func() { // dialler → listener, until front is closed
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := front.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			dialler = from
			mu.Unlock()
			if !lose(true, buf[:n]) {
				_, _ = back.Write(buf[:n])
			}
		}
	}()
	go func() { // listener → dialler, until back is closed
		defer wg.Done()
		buf := make([]byte, 65535)
		for {
			n, err := back.Read(buf)
			if err != nil {
				return
			}
			mu.Lock()
			to := dialler
			mu.Unlock()
			if to.IsValid() && !lose(false, buf[:n]) {
				_, _ = front.WriteToUDPAddrPort(buf[:n], to)
			}
		}
	}()
	t.Cleanup(func() {
		front.Close()
		back.Close()
		wg.Wait()
	})
	return l
}

func (l *lossyLink) addr() string { return l.front.LocalAddr().String() }
