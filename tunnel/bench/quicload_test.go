package bench

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"
)

// The QUIC sink counts what flows and bulk payloads send it and echoes the
// round-trip probes on the same socket.
func TestQUICSinkFlowsBulkAndEcho(t *testing.T) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	sink, err := startQUICSink(pc)
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	addr := pc.LocalAddr().String()
	listen := func() (net.PacketConn, error) { return net.ListenPacket("udp4", "127.0.0.1:0") }
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	probe, err := net.Dial("udp4", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	msg := make([]byte, 64)
	msg[63] = 7
	p50, _, err := udpRTTOn(ctx, probe, addr, 20)
	if err != nil || p50 <= 0 {
		t.Fatalf("round trips through the sink's echo: %v, %v", p50, err)
	}
	if _, err := probe.Write(msg); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 100)
	_ = probe.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := probe.Read(got)
	if err != nil || !bytes.Equal(got[:n], msg) {
		t.Fatalf("echo: %d bytes, %v", n, err)
	}

	flows, err := startQUICFlows(ctx, listen, addr, sink.client, 4)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for sink.received.Load() < 4<<20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	flows.Stop()
	if got := sink.received.Load(); got < 4<<20 {
		t.Fatalf("4 flows delivered %d bytes in 10 s", got)
	}

	// Each payload counts only once the sink has read it to its end and
	// acknowledged it.
	bps, err := quicBulk(ctx, listen, addr, sink.client, 300*time.Millisecond)
	if err != nil || bps <= 0 {
		t.Fatalf("bulk: %v B/s, %v", bps, err)
	}
}
