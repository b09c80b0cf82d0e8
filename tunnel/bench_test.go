package tunnel_test

import (
	"encoding/binary"
	"net"
	"sort"
	"testing"
	"time"
)

// BenchmarkTCPThroughput streams through forward (aks) → WireGuard over
// loopback UDP → expose (eks) to a kernel sink: the production shape, in
// one process. MB/s is the figure.
func BenchmarkTCPThroughput(b *testing.B) {
	p := startPairWithTarget(b, sinkServer(b))
	chunk := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	c, err := net.DialTimeout("tcp", p.forward(b, "relay-tcp"), 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := c.Write(chunk); err != nil {
			b.Fatal(err)
		}
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		b.Fatal(err)
	}
	var n int64
	if err := binary.Read(c, binary.BigEndian, &n); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	if n != int64(b.N*len(chunk)) {
		b.Fatalf("sink read %d bytes, want %d", n, b.N*len(chunk))
	}
}

// BenchmarkUDPRoundTrip sends 64-byte datagrams one at a time through the
// tunnel to a UDP echo service and reports p50 and p99.
func BenchmarkUDPRoundTrip(b *testing.B) {
	p := startPair(b, pairOpts{})
	c, err := net.Dial("udp", p.forward(b, "relay-udp"))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	msg := make([]byte, 64)
	if _, err := udpRoundTrip(c, msg, 10, time.Second); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 2048)
	rtts := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if _, err := c.Write(msg); err != nil {
			b.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		if _, err := c.Read(buf); err != nil {
			b.Fatal(err)
		}
		rtts = append(rtts, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(rtts, func(i, j int) bool { return rtts[i] < rtts[j] })
	b.ReportMetric(float64(rtts[len(rtts)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(rtts[len(rtts)*99/100].Microseconds()), "p99-µs")
}
