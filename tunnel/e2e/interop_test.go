package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/echo"
	"github.com/tunnel-dev/tunnel/internal/netns"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
)

// TestInteropWithDebianWireGuard runs our gateway in one namespace and
// Debian's wireguard-go on a real TUN, configured by Debian's wg, in
// another, joined by a veth pair. Our gateway dials out (no listening port),
// as the EKS side does by default. A client in the peer's namespace reaches
// the exposed ports and nothing else; wg show reads our UAPI socket.
func TestInteropWithDebianWireGuard(t *testing.T) {
	netns.Require(t, "wireguard-go", "wg", "ping", "ss")
	nsPeer, nsGW := netns.Name("ttwg"), netns.Name("ttgw")
	netns.Create(t, nsPeer)
	netns.Create(t, nsGW)
	netns.Veth(t, nsPeer, "veth0", "192.168.77.1/24", nsGW, "veth0", "192.168.77.2/24")

	dir := t.TempDir()
	gwPub, err := keys.WriteKeyPair(filepath.Join(dir, "gw"), false)
	if err != nil {
		t.Fatal(err)
	}
	peerPub, err := keys.WriteKeyPair(filepath.Join(dir, "peer"), false)
	if err != nil {
		t.Fatal(err)
	}

	// The services behind our gateway, inside its namespace.
	tcpEcho := listenTCPEcho(t, nsGW, "127.0.0.1:9000")
	udpEcho := listenUDPEcho(t, nsGW, "127.0.0.1:9001")

	// Debian's wireguard-go on a real TUN device.
	wgIf := netns.Name("twg")
	netns.Start(t, nsPeer, []string{"WG_I_PREFER_BUGGY_USERSPACE_TO_POLISHED_KMOD=1"}, "wireguard-go", "-f", wgIf)
	testutil.EventuallyEvery(t, 10*time.Second, 100*time.Millisecond, "wireguard-go's interface", func() bool {
		_, err := netns.Output("ip", "-n", nsPeer, "link", "show", wgIf)
		return err == nil
	})
	netns.MustRun(t, "ip", "netns", "exec", nsPeer, "wg", "set", wgIf,
		"private-key", filepath.Join(dir, "peer", keys.PrivateKeyFile), "listen-port", "51820",
		"peer", gwPub.String(), "allowed-ips", "10.99.0.0/24")
	netns.MustRun(t, "ip", "-n", nsPeer, "addr", "add", "10.99.0.2/32", "dev", wgIf)
	netns.MustRun(t, "ip", "-n", nsPeer, "link", "set", wgIf, "up")
	netns.MustRun(t, "ip", "-n", nsPeer, "route", "add", "10.99.0.0/24", "dev", wgIf)

	// Our gateway, dialling the peer.
	gwName := netns.Name("tgw")
	cfg := filepath.Join(dir, "gateway.yaml")
	writeFile(t, cfg, fmt.Sprintf(`
interface:
  name: %s
  privateKeyFile: %s
  addresses: [10.99.0.1]
peers:
  - name: peer
    publicKey: %s
    endpoint: 192.168.77.1:51820
    persistentKeepalive: 1s
    allowedIPs: [10.99.0.2/32]
expose:
  - {name: echo-tcp, protocol: tcp, port: 8000, target: "%s", peers: [peer]}
  - {name: echo-udp, protocol: udp, port: 7000, target: "%s", peers: [peer]}
admin: {listen: "127.0.0.1:9090"}
`, gwName, filepath.Join(dir, "gw", keys.PrivateKeyFile), peerPub, tcpEcho, udpEcho))
	gw := netns.Start(t, nsGW, nil, bin(t, "tunnel"), "gateway", "--config", cfg)

	// wg show, from outside both namespaces, reads our UAPI socket.
	var show string
	testutil.EventuallyEvery(t, 15*time.Second, 100*time.Millisecond, "wg show to list the peer with a handshake", func() bool {
		show, _ = netns.Output("wg", "show", gwName)
		return strings.Contains(show, peerPub.String()) && strings.Contains(show, "latest handshake")
	})
	t.Logf("wg show %s:\n%s", gwName, show)
	// Zero inbound exposure: the gateway's only kernel UDP socket is
	// connected to its peer; nothing of ours listens.
	listening := netns.MustRun(t, "ss", "-H", "-N", nsGW, "-ulnp")
	if strings.Contains(listening, `"tunnel"`) {
		t.Errorf("our gateway has a listening UDP socket; it should only dial:\n%s", listening)
	}
	connected := netns.MustRun(t, "ss", "-H", "-N", nsGW, "-unp", "state", "established")
	if !strings.Contains(connected, "192.168.77.1:51820") || !strings.Contains(connected, `"tunnel"`) {
		t.Errorf("no UDP socket of ours connected to the peer:\n%s", connected)
	}
	t.Logf("ss: our UDP socket is connected to the peer only:\n%s", connected)

	// Through the tunnel from the peer's namespace: the exposed ports work.
	msg := []byte("through a real TUN and Debian's wireguard-go")
	err = netns.In(nsPeer, func() error {
		c, err := net.DialTimeout("tcp", "10.99.0.1:8000", 5*time.Second)
		if err != nil {
			return fmt.Errorf("tcp/8000: %w", err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := c.Write(msg); err != nil {
			return err
		}
		_ = c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, msg) {
			return fmt.Errorf("tcp echo %q, %v", got, err)
		}
		u, err := net.Dial("udp", "10.99.0.1:7000")
		if err != nil {
			return err
		}
		defer u.Close()
		_ = u.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := u.Write(msg); err != nil {
			return err
		}
		buf := make([]byte, 2048)
		n, err := u.Read(buf)
		if err != nil || !bytes.Equal(buf[:n], msg) {
			return fmt.Errorf("udp echo %q, %v", buf[:n], err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("exposed ports: %v", err)
	}
	t.Log("peer namespace → 10.99.0.1:8000 (tcp) and :7000 (udp): echoed")

	// And nothing else: another port, another tunnel address, ICMP.
	for _, to := range []string{"10.99.0.1:8001", "10.99.0.1:9000", "10.99.0.5:8000"} {
		err := netns.In(nsPeer, func() error {
			c, err := net.DialTimeout("tcp", to, 2*time.Second)
			if err == nil {
				c.Close()
				return fmt.Errorf("connected")
			}
			if ne, ok := err.(net.Error); !ok || !ne.Timeout() {
				return fmt.Errorf("%v (want no answer at all, not a refusal)", err)
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", to, err)
		}
	}
	if out, err := netns.Output("ip", "netns", "exec", nsPeer, "ping", "-c", "2", "-W", "1", "10.99.0.1"); err == nil {
		t.Errorf("ping through the tunnel answered:\n%s", out)
	}
	t.Log("10.99.0.1:8001, 10.99.0.1:9000, 10.99.0.5:8000 and ping 10.99.0.1: no answer")

	// tunnel status, inside the gateway's namespace, shows the drops.
	status := netns.MustRun(t, "ip", "netns", "exec", nsGW, bin(t, "tunnel"), "status", "--name", gwName)
	t.Logf("tunnel status:\n%s", status)
	for _, want := range []string{"peer", "echo-tcp", "not_exposed=", "not_our_address=", "icmp="} {
		if !strings.Contains(status, want) {
			t.Errorf("status lacks %q", want)
		}
	}
	if err := gw.Signal(15); err != nil {
		t.Fatal(err)
	}
	if exited, err := gw.Wait(15 * time.Second); !exited || err != nil {
		t.Fatalf("gateway after SIGTERM: exited=%v err=%v\n%s", exited, err, gw.Output())
	}
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
}

// listenTCPEcho starts a TCP echo service inside ns.
func listenTCPEcho(t *testing.T, ns, addr string) string {
	t.Helper()
	var ln net.Listener
	if err := netns.In(ns, func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { echo.TCP(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return ln.Addr().String()
}

// listenUDPEcho starts a UDP echo service inside ns.
func listenUDPEcho(t *testing.T, ns, addr string) string {
	t.Helper()
	var pc net.PacketConn
	if err := netns.In(ns, func() (err error) { pc, err = net.ListenPacket("udp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { echo.UDP(pc); close(done) }()
	t.Cleanup(func() { pc.Close(); <-done })
	return pc.LocalAddr().String()
}
