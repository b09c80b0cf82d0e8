package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

// QUIC in embedded mode, as relay and bunny can run it: quic-go on the
// gateways' own UDP sockets (the fast path, with only ReadFrom, WriteTo
// and deadlines), relay's TLS and packet size. A bulk stream arrives
// intact and no QUIC packet is ever fragmented.
func TestQUICOverEmbeddedSockets(t *testing.T) {
	p := startPair(t, pairOpts{eksListens: true})
	srvID, cliID := testutil.Identity(t, "relay"), testutil.Identity(t, "bunny")
	spc, err := p.eks.ListenPacket("udp", ":7443")
	if err != nil {
		t.Fatal(err)
	}
	defer spc.Close()
	ln, err := quic.Listen(spc, proto.ServerTLS(srvID, func(pin keys.Pin) error { return nil }), proto.QUICOptions{}.Config(true))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			go func() {
				for {
					s, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() { // echo the stream's bytes, hashed
						h := sha256.New()
						_, _ = io.Copy(h, s)
						_, _ = s.Write(h.Sum(nil))
						s.Close()
					}()
				}
			}()
		}
	}()

	cpc, err := p.aks.ListenPacket("udp", ":40000")
	if err != nil {
		t.Fatal(err)
	}
	defer cpc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := quic.Dial(ctx, cpc, &net.UDPAddr{IP: net.IPv4(10, 99, 0, 1), Port: 7443},
		proto.ClientTLS(cliID, srvID.Pin()), proto.QUICOptions{}.Config(false))
	if err != nil {
		t.Fatalf("QUIC handshake through the tunnel: %v", err)
	}
	defer conn.CloseWithError(0, "")
	s, err := conn.OpenStreamSync(ctx)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 8<<20)
	_, _ = rand.Read(data)
	go func() { _, _ = s.Write(data); s.Close() }()
	got, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(data)
	if !bytes.Equal(got, want[:]) {
		t.Fatal("the server hashed something other than what was sent")
	}
	st := conn.ConnectionStats()
	t.Logf("QUIC over the tunnel: 8 MiB, rtt %v, %d packets sent, %d lost; aks queue drops %d, eks socket drops %d",
		st.SmoothedRTT, st.PacketsSent, st.PacketsLost, p.aks.Status().QueueDrops, p.eks.Status().TunnelSocketDrops)
	t.Logf("udp receive drops: aks %d eks %d", p.aks.Status().UDPReceiveDrops, p.eks.Status().UDPReceiveDrops)
	if frag := p.eks.Status().Ingress["fragment"]; frag != 0 {
		t.Fatalf("%d fragments reached eks: a QUIC packet did not fit the tunnel", frag)
	}
}
