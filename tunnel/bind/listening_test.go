package bind

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// receiveAll reads from fn with wireguard-go's batch until want datagrams
// came, or 5 s passed.
func receiveAll(t *testing.T, fn conn.ReceiveFunc, want int) (got [][]byte, from []conn.Endpoint) {
	t.Helper()
	packets := make([][]byte, batchSize)
	for i := range packets {
		packets[i] = make([]byte, 65535)
	}
	sizes := make([]int, batchSize)
	eps := make([]conn.Endpoint, batchSize)
	deadline := time.Now().Add(5 * time.Second)
	for len(got) < want && time.Now().Before(deadline) {
		n, err := fn(packets, sizes, eps)
		if err != nil {
			t.Fatal(err)
		}
		for i := range n {
			got = append(got, append([]byte(nil), packets[i][:sizes[i]]...))
			from = append(from, eps[i])
		}
	}
	if len(got) != want {
		t.Fatalf("received %d datagrams, want %d", len(got), want)
	}
	return got, from
}

// train is 100 equal datagrams and a short one, in buffers with room to
// 64 KiB like wireguard-go's.
func train() [][]byte {
	var bufs [][]byte
	for i := range 100 {
		buf := make([]byte, 1400, 65535)
		buf[0], buf[1399] = byte(i), byte(i)
		bufs = append(bufs, buf)
	}
	return append(bufs, append(make([]byte, 0, 65535), []byte("tail")...))
}

func checkTrain(t *testing.T, got [][]byte) {
	t.Helper()
	for i := range 100 {
		if len(got[i]) != 1400 || got[i][0] != byte(i) || got[i][1399] != byte(i) {
			t.Fatalf("datagram %d: %d bytes, first %d", i, len(got[i]), got[i][0])
		}
	}
	if string(got[100]) != "tail" {
		t.Fatalf("last datagram %q", got[100])
	}
}

// A dialling Connected bind and a Listening one carry batches both ways:
// the listener learns its peer's endpoint from what it receives and
// answers it there, over IPv4 and IPv6 on its one socket.
func TestListeningTalksToWhoeverDials(t *testing.T) {
	for _, addr := range []string{"127.0.0.1", "::1"} {
		for _, noOffload := range []bool{false, true} {
			name := addr + map[bool]string{false: " offload", true: " no-offload"}[noOffload]
			t.Run(name, func(t *testing.T) {
				lo := netip.MustParseAddr(addr)
				if lo.Is6() {
					if c, err := net.ListenUDP("udp6", &net.UDPAddr{IP: lo.AsSlice()}); err != nil {
						t.Skipf("no IPv6 loopback: %v", err)
					} else {
						c.Close()
					}
				}
				l := NewListening()
				l.NoOffload = noOffload
				lfns, port, err := l.Open(0)
				if err != nil {
					t.Fatal(err)
				}
				defer l.Close()
				if port == 0 || len(lfns) != 1 || l.BatchSize() != batchSize {
					t.Fatalf("Open = %d fns, port %d, batch %d", len(lfns), port, l.BatchSize())
				}
				d := NewConnected(netip.AddrPortFrom(lo, port))
				d.NoOffload = noOffload
				dfns, _, err := d.Open(0)
				if err != nil {
					t.Fatal(err)
				}
				defer d.Close()

				ep, _ := d.ParseEndpoint(netip.AddrPortFrom(lo, port).String())
				if err := d.Send(train(), ep); err != nil {
					t.Fatal(err)
				}
				got, from := receiveAll(t, lfns[0], 101)
				checkTrain(t, got)
				dialler := from[0].(*Endpoint).AddrPort
				if dialler.Addr() != lo || dialler.Port() != uint16(d.sock.uc.LocalAddr().(*net.UDPAddr).Port) {
					t.Fatalf("listener heard %s, want the dialler's socket", dialler)
				}
				if err := l.Send(train(), from[0]); err != nil {
					t.Fatal(err)
				}
				got, _ = receiveAll(t, dfns[0], 101)
				checkTrain(t, got)
				t.Logf("offload in use after the sends: %v", l.sock.offload.Load())
			})
		}
	}
}

func TestListeningClose(t *testing.T) {
	l := NewListening()
	fns, port, err := l.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Open(0); err != conn.ErrBindAlreadyOpen {
		t.Fatalf("second Open: %v, want ErrBindAlreadyOpen", err)
	}
	done := recvOne(fns[0])
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-done:
		if got[:6] != "error:" {
			t.Fatalf("receive after Close got %q", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("receive did not return after Close")
	}
	ep, _ := l.ParseEndpoint("127.0.0.1:9")
	if err := l.Send([][]byte{[]byte("x")}, ep); err == nil {
		t.Fatal("Send after Close succeeded")
	}
	// The port is free again: it can be opened anew.
	if _, _, err := l.Open(port); err != nil {
		t.Fatalf("reopen on %d: %v", port, err)
	}
	l.Close()
	if err := l.SetMark(1); err == nil {
		t.Fatal("SetMark(1) succeeded without CAP_NET_ADMIN's promise")
	}
}

// Counted tells its receive hooks of every receive, each function with a
// timer of its own, and what it got.
func TestCountedReceives(t *testing.T) {
	var waits, got int
	var timers []**time.Timer
	c := Counting(NewListening(), func(int) {})
	c.Receiving = func(timer **time.Timer) { waits++; timers = append(timers, timer) }
	c.Received = func(n int) { got += n }
	fns, port, err := c.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	d := NewConnected(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port))
	if _, _, err := d.Open(0); err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ep, _ := d.ParseEndpoint(netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String())
	if err := d.Send(train(), ep); err != nil {
		t.Fatal(err)
	}
	receiveAll(t, fns[0], 101)
	if got != 101 || waits == 0 || timers[0] != timers[len(timers)-1] {
		t.Fatalf("received %d in %d receives, one timer: %v", got, waits, timers[0] == timers[len(timers)-1])
	}
}
