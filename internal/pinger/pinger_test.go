package pinger

import (
	"net"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/echo"
)

func TestPingerAgainstAnEcho(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { echo.UDP(pc); close(done) }()
	p := Start(t, pc.LocalAddr().String(), 5*time.Millisecond)
	p.Flowing(t, 10*time.Second, 10, "echo on loopback")
	if p.Sent.Load() < p.Got.Load() || p.Got.Load() < 10 {
		t.Fatalf("sent %d, echoed %d", p.Sent.Load(), p.Got.Load())
	}
	// The echo stops: the silence grows past its length, and Flowing
	// would time out.
	pc.Close()
	<-done
	time.Sleep(150 * time.Millisecond)
	if g := p.Gap(); g < 150*time.Millisecond {
		t.Fatalf("gap %v after a 150ms silence", g)
	}
	p.ResetGap()
	if g := p.Gap(); g >= 150*time.Millisecond {
		t.Fatalf("gap %v right after ResetGap", g)
	}
	p.Halt()
	sent := p.Sent.Load()
	time.Sleep(30 * time.Millisecond)
	if p.Sent.Load() != sent {
		t.Fatal("still sending after Halt")
	}
}
