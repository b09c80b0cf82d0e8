package tunnel_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/checksum"
	"gvisor.dev/gvisor/pkg/tcpip/header"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// rawPeer is a WireGuard peer whose TUN is two channels: a test writes
// crafted IP packets into the tunnel and reads what comes back.
type rawPeer struct {
	tun *tuntest.ChannelTUN
	rx  chan []byte
}

func startRawPeer(t *testing.T, gwPub string, gwPort int, key string) *rawPeer {
	t.Helper()
	ct := tuntest.NewChannelTUN()
	dev := device.NewDevice(ct.TUN(), conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\npublic_key=%s\nendpoint=127.0.0.1:%d\nallowed_ip=10.99.0.0/24\nallowed_ip=fd00::/64\n", key, gwPub, gwPort)
	if err := dev.IpcSet(cfg); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	r := &rawPeer{tun: ct, rx: make(chan []byte, 256)}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case p := <-ct.Inbound:
				select {
				case r.rx <- p:
				default:
				}
			case <-stop:
				return
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; dev.Close() })
	return r
}

func (r *rawPeer) send(t *testing.T, pkt []byte) {
	t.Helper()
	select {
	case r.tun.Outbound <- pkt:
	case <-time.After(5 * time.Second):
		t.Fatal("the raw peer's device took no packet")
	}
}

// silence fails the test if anything comes back within d.
func (r *rawPeer) silence(t *testing.T, what string, d time.Duration) {
	t.Helper()
	select {
	case p := <-r.rx:
		t.Errorf("%s: got an answer: %s", what, describePacket(p))
	case <-time.After(d):
	}
}

func describePacket(p []byte) string {
	if len(p) >= header.IPv4MinimumSize && p[0]>>4 == 4 {
		ip := header.IPv4(p)
		return fmt.Sprintf("IPv4 %s → %s proto %d, %d bytes", ip.SourceAddress(), ip.DestinationAddress(), ip.Protocol(), len(p))
	}
	if len(p) >= header.IPv6MinimumSize && p[0]>>4 == 6 {
		ip := header.IPv6(p)
		return fmt.Sprintf("IPv6 %s → %s next header %d, %d bytes", ip.SourceAddress(), ip.DestinationAddress(), ip.NextHeader(), len(p))
	}
	return fmt.Sprintf("%d bytes %x", len(p), p)
}

// crafted is a packet to build: the transport header and payload, and what
// to put around it.
type crafted struct {
	src, dst netip.AddrPort
	proto    uint8
	tcpFlags header.TCPFlags
	seq, ack uint32
	payload  []byte
	// udpLen overrides the UDP length field when non-zero.
	udpLen int
	// ipv4Options (a multiple of four bytes) follow the IPv4 header;
	// ipv6Ext, if not zero, is the type of an extension header put
	// before the transport header (60: destination options).
	ipv4Options []byte
	ipv6Ext     int
}

func (c crafted) build() []byte {
	src, dst := tcpip.AddrFromSlice(c.src.Addr().AsSlice()), tcpip.AddrFromSlice(c.dst.Addr().AsSlice())
	var tr []byte
	switch c.proto {
	case uint8(header.TCPProtocolNumber):
		tr = make([]byte, header.TCPMinimumSize+len(c.payload))
		header.TCP(tr).Encode(&header.TCPFields{SrcPort: c.src.Port(), DstPort: c.dst.Port(), SeqNum: c.seq, AckNum: c.ack,
			DataOffset: header.TCPMinimumSize, Flags: c.tcpFlags, WindowSize: 65535})
		copy(tr[header.TCPMinimumSize:], c.payload)
	default:
		tr = make([]byte, header.UDPMinimumSize+len(c.payload))
		n := len(tr)
		if c.udpLen != 0 {
			n = c.udpLen
		}
		header.UDP(tr).Encode(&header.UDPFields{SrcPort: c.src.Port(), DstPort: c.dst.Port(), Length: uint16(n)})
		copy(tr[header.UDPMinimumSize:], c.payload)
	}
	xsum := header.PseudoHeaderChecksum(tcpip.TransportProtocolNumber(c.proto), src, dst, uint16(len(tr)))
	xsum = ^checksum.Checksum(tr, xsum)
	if c.proto == uint8(header.TCPProtocolNumber) {
		header.TCP(tr).SetChecksum(xsum)
	} else {
		header.UDP(tr).SetChecksum(xsum)
	}
	if c.src.Addr().Is4() {
		hl := header.IPv4MinimumSize + len(c.ipv4Options)
		pkt := make([]byte, hl+len(tr))
		ip := header.IPv4(pkt)
		ip.Encode(&header.IPv4Fields{TotalLength: uint16(len(pkt)), TTL: 64, Protocol: c.proto, SrcAddr: src, DstAddr: dst})
		pkt[0] = 0x40 | byte(hl/4)
		copy(pkt[header.IPv4MinimumSize:], c.ipv4Options)
		ip.SetChecksum(0)
		ip.SetChecksum(^ip.CalculateChecksum())
		copy(pkt[hl:], tr)
		return pkt
	}
	var ext []byte
	next := c.proto
	if c.ipv6Ext != 0 {
		// An empty options header: next header, length 0, a PadN of 4.
		ext = []byte{c.proto, 0, 1, 4, 0, 0, 0, 0}
		next = uint8(c.ipv6Ext)
	}
	pkt := make([]byte, header.IPv6MinimumSize+len(ext)+len(tr))
	header.IPv6(pkt).Encode(&header.IPv6Fields{PayloadLength: uint16(len(ext) + len(tr)), TransportProtocol: tcpip.TransportProtocolNumber(next),
		HopLimit: 64, SrcAddr: src, DstAddr: dst})
	copy(pkt[header.IPv6MinimumSize:], ext)
	copy(pkt[header.IPv6MinimumSize+len(ext):], tr)
	return pkt
}

var (
	gwAddr4  = netip.MustParseAddr("10.99.0.1")
	gwAddr6  = netip.MustParseAddr("fd00::1")
	rawAddr4 = netip.MustParseAddr("10.99.0.2")
	rawAddr6 = netip.MustParseAddr("fd00::2")
)

// "Dropped silently, counted": each packet here passed the policy of old
// and drew an answer from gVisor (a SYN-ACK, a RST, an ICMP error), or
// never reached its socket. Now each is dropped before the stack, with no
// answer, under a reason of its own.
func TestCraftedPacketsGetNoAnswer(t *testing.T) {
	gwKey, rawKey := testutil.PrivateKey(t), testutil.PrivateKey(t)
	port := freeUDPPort(t)
	c := mustParse(t, fmt.Sprintf(`
interface:
  name: eks
  privateKeyFile: unused
  listenPort: %d
  addresses: [10.99.0.1, fd00::1]
  uapiDir: "-"
peers:
  - name: raw
    publicKey: %s
    allowedIPs: [10.99.0.2/32, fd00::2/128]
expose:
  - {name: relay-udp, protocol: udp, port: 7000, target: "%s", peers: [raw]}
  - {name: relay-tcp, protocol: tcp, port: 8000, target: "%s", peers: [raw]}
forward:
  - {name: back-tcp, protocol: tcp, listen: "127.0.0.1:0", peer: raw, to: "10.99.0.2:9000"}
  - {name: back-udp, protocol: udp, listen: "127.0.0.1:0", peer: raw, to: "10.99.0.2:9001"}
admin: {listen: "-"}
`, port, rawKey.Public(), udpEchoServer(t), tcpEchoServer(t)))
	gw := startGateway(t, c, gwKey)
	raw := startRawPeer(t, gwKey.Public().UAPIHex(), port, rawKey.UAPIHex())

	// First prove the harness hears answers: a SYN to the exposed port
	// draws a SYN-ACK (then a RST ends it), a datagram its echo.
	syn := crafted{src: netip.AddrPortFrom(rawAddr4, 41000), dst: netip.AddrPortFrom(gwAddr4, 8000), proto: 6, tcpFlags: header.TCPFlagSyn, seq: 1000}
	var synAck header.TCP
	testutil.Eventually(t, 10*time.Second, "a SYN-ACK from the exposed port", func() bool {
		raw.send(t, syn.build())
		select {
		case p := <-raw.rx:
			synAck = header.TCP(p[header.IPv4(p).HeaderLength():])
			return synAck.Flags() == header.TCPFlagSyn|header.TCPFlagAck
		case <-time.After(300 * time.Millisecond):
			return false
		}
	})
	rst := syn
	rst.tcpFlags, rst.seq = header.TCPFlagRst, synAck.AckNumber()
	raw.send(t, rst.build())
	echo := crafted{src: netip.AddrPortFrom(rawAddr4, 41001), dst: netip.AddrPortFrom(gwAddr4, 7000), proto: 17, payload: []byte("echo?")}
	raw.send(t, echo.build())
	select {
	case p := <-raw.rx:
		if u := header.UDP(p[header.IPv4(p).HeaderLength():]); string(u.Payload()) != "echo?" {
			t.Fatalf("echo: got %s", describePacket(p))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no echo from the exposed UDP port")
	}
	raw.silence(t, "after the sanity checks", 300*time.Millisecond)

	nop4 := []byte{1, 1, 1, 1} // four NOPs: options any stack accepts
	tests := []struct {
		name   string
		pkt    crafted
		reason string
	}{
		{"udp length shorter than the datagram", crafted{src: netip.AddrPortFrom(rawAddr4, 42000), dst: netip.AddrPortFrom(gwAddr4, 7000), proto: 17, payload: []byte("0123456789"), udpLen: 12}, "udp_length"},
		{"udp length longer than the datagram", crafted{src: netip.AddrPortFrom(rawAddr4, 42001), dst: netip.AddrPortFrom(gwAddr4, 7000), proto: 17, payload: []byte("0123"), udpLen: 40}, "udp_length"},
		{"udp length shorter over IPv6", crafted{src: netip.AddrPortFrom(rawAddr6, 42002), dst: netip.AddrPortFrom(gwAddr6, 7000), proto: 17, payload: []byte("0123456789"), udpLen: 9}, "udp_length"},
		{"IPv6 destination options before UDP", crafted{src: netip.AddrPortFrom(rawAddr6, 42003), dst: netip.AddrPortFrom(gwAddr6, 7000), proto: 17, payload: []byte("hi"), ipv6Ext: 60}, "ip_options"},
		{"IPv6 destination options before a SYN", crafted{src: netip.AddrPortFrom(rawAddr6, 42004), dst: netip.AddrPortFrom(gwAddr6, 8000), proto: 6, tcpFlags: header.TCPFlagSyn, ipv6Ext: 60}, "ip_options"},
		{"IPv4 options on a SYN", crafted{src: netip.AddrPortFrom(rawAddr4, 42005), dst: netip.AddrPortFrom(gwAddr4, 8000), proto: 6, tcpFlags: header.TCPFlagSyn, ipv4Options: nop4}, "ip_options"},
		{"IPv4 options on a datagram", crafted{src: netip.AddrPortFrom(rawAddr4, 42006), dst: netip.AddrPortFrom(gwAddr4, 7000), proto: 17, payload: []byte("hi"), ipv4Options: nop4}, "ip_options"},
		{"dialled TCP remote to a port with no flow", crafted{src: netip.AddrPortFrom(rawAddr4, 9000), dst: netip.AddrPortFrom(gwAddr4, 45678), proto: 6, tcpFlags: header.TCPFlagAck, seq: 5, ack: 7}, "no_flow"},
		{"dialled TCP remote sends a SYN to a port with no flow", crafted{src: netip.AddrPortFrom(rawAddr4, 9000), dst: netip.AddrPortFrom(gwAddr4, 45679), proto: 6, tcpFlags: header.TCPFlagSyn}, "no_flow"},
		{"dialled UDP remote to a port with no flow", crafted{src: netip.AddrPortFrom(rawAddr4, 9001), dst: netip.AddrPortFrom(gwAddr4, 45678), proto: 17, payload: []byte("hi")}, "no_flow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := gw.Status().Ingress[tt.reason]
			raw.send(t, tt.pkt.build())
			raw.silence(t, tt.name, 400*time.Millisecond)
			if got := gw.Status().Ingress[tt.reason]; got != before+1 {
				t.Errorf("ingress drops %q went %d → %d, want one more", tt.reason, before, got)
			}
		})
	}
	checkCountedAsMetric(t, gw)
}

// checkCountedAsMetric: the drop reasons the test relies on are labels of
// the ingress metric, zero or not.
func checkCountedAsMetric(t *testing.T, gw *tunnel.Gateway) {
	t.Helper()
	mfs, err := gw.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "tunnel_ingress_dropped_packets_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" {
					seen[l.GetValue()] = m.GetCounter().GetValue()
				}
			}
		}
	}
	for _, r := range []string{"udp_length", "ip_options", "no_flow"} {
		if seen[r] == 0 {
			t.Errorf("metric tunnel_ingress_dropped_packets_total{reason=%q} = %v, want the drops counted", r, seen[r])
		}
	}
}
