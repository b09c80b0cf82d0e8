package bench

import (
	"context"
	"net"
	"testing"
	"time"
)

// Round trips are timed by each datagram's own echo. Echoes that were
// already waiting (what a tunnel still handshaking releases all at once)
// are skipped: timed by those, an echo 5 ms away measured microseconds.
func TestUDPRTTSkipsStaleEchoes(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	const delay = 5 * time.Millisecond
	go func() {
		buf := make([]byte, 2048)
		first := true
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			msg := append([]byte(nil), buf[:n]...)
			if first {
				// The warm-up's own echo, then 30 stale copies of it.
				first = false
				for range 31 {
					_, _ = pc.WriteTo(msg, from)
				}
				continue
			}
			time.Sleep(delay)
			_, _ = pc.WriteTo(msg, from)
		}
	}()
	c, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p50, p99, err := udpRTTOn(context.Background(), c, pc.LocalAddr().String(), 20)
	if err != nil {
		t.Fatal(err)
	}
	if p50 < delay || p99 < p50 {
		t.Fatalf("p50 %v, p99 %v: want at least the echo's %v", p50, p99, delay)
	}
}
