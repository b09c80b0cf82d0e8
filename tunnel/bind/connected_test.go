package bind

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

func listen(t *testing.T) *net.UDPConn {
	t.Helper()
	uc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { uc.Close() })
	return uc
}

func addrOf(uc *net.UDPConn) netip.AddrPort {
	return uc.LocalAddr().(*net.UDPAddr).AddrPort()
}

// recvOne runs fn once in the background and returns what it got.
func recvOne(fn conn.ReceiveFunc) chan string {
	out := make(chan string, 1)
	go func() {
		bufs := [][]byte{make([]byte, 1500)}
		sizes := make([]int, 1)
		eps := make([]conn.Endpoint, 1)
		n, err := fn(bufs, sizes, eps)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		out <- string(bufs[0][:sizes[0]*n]) + " from " + eps[0].DstToString()
	}()
	return out
}

func TestConnectedTalksOnlyToItsPeer(t *testing.T) {
	peer := listen(t)
	b := NewConnected(addrOf(peer))
	fns, port, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if port == 0 || len(fns) != 1 {
		t.Fatalf("Open = %d fns, port %d", len(fns), port)
	}
	ep, _ := b.ParseEndpoint(addrOf(peer).String())
	if err := b.Send([][]byte{[]byte("hello"), []byte("again")}, ep); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "hello" || from.Port() != port {
		t.Fatalf("peer got %q from %v (%v), want hello from port %d", buf[:n], from, err, port)
	}
	got := recvOne(fns[0])
	// A stranger's datagram to our port is dropped by the kernel...
	stranger := listen(t)
	if _, err := stranger.WriteToUDPAddrPort([]byte("stranger"), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)); err != nil {
		t.Fatal(err)
	}
	// ...and the peer's arrives.
	if _, err := peer.WriteToUDPAddrPort([]byte("reply"), from); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "reply from "+addrOf(peer).String() {
			t.Fatalf("received %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("nothing received")
	}
}

func TestConnectedSurvivesRefusalAndRedials(t *testing.T) {
	// A port with nothing behind it: the kernel answers ICMP unreachable.
	gone := listen(t)
	goneAddr := addrOf(gone)
	gone.Close()
	b := NewConnected(goneAddr)
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	got := recvOne(fns[0])
	ep, _ := b.ParseEndpoint(goneAddr.String())
	for range 3 {
		if err := b.Send([][]byte{[]byte("anyone?")}, ep); err != nil {
			t.Fatalf("send to a closed port: %v (a refusal is a lost packet, not an error)", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The peer's name now resolves elsewhere: a send there re-connects, and
	// the receive that was waiting carries on on the new socket.
	peer := listen(t)
	ep2, _ := b.ParseEndpoint(addrOf(peer).String())
	if err := b.Send([][]byte{[]byte("moved")}, ep2); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 100)
	_ = peer.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, from, err := peer.ReadFromUDPAddrPort(buf)
	if err != nil || string(buf[:n]) != "moved" {
		t.Fatalf("peer got %q, %v", buf[:n], err)
	}
	if _, err := peer.WriteToUDPAddrPort([]byte("welcome"), from); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "welcome from "+addrOf(peer).String() {
			t.Fatalf("received %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the receive did not move to the new socket")
	}
}

func TestConnectedClose(t *testing.T) {
	b := NewConnected(netip.AddrPort{}) // endpoint not known yet
	fns, port, err := b.Open(0)
	if err != nil || port != 0 {
		t.Fatalf("Open: %v, port %d", err, port)
	}
	got := recvOne(fns[0])
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-got:
		if s != "error: "+net.ErrClosed.Error() {
			t.Fatalf("after Close: %q", s)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("receive did not return after Close")
	}
	// Reopen works, and the old receive function stays closed.
	if _, _, err := b.Open(0); err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	n, err := fns[0]([][]byte{make([]byte, 10)}, make([]int, 1), make([]conn.Endpoint, 1))
	if n != 0 || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("old receive after reopen: %d, %v", n, err)
	}
	if err := b.SetMark(1); err == nil {
		t.Fatal("accepted a firewall mark")
	}
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	uc := listen(t)
	p := addrOf(uc).Port()
	uc.Close()
	return p
}

// Two connected binds facing each other carry a batch of datagrams intact
// and in order, with segmentation offload and without, from buffers with
// room to 64 KiB like wireguard-go's and from buffers with none (offload
// gathers them, it does not append).
func TestConnectedBatches(t *testing.T) {
	for _, tc := range []struct {
		name             string
		noOffload, tight bool
	}{{"offload", false, false}, {"offload, tight buffers", false, true}, {"no-offload", true, false}} {
		noOffload := tc.noOffload
		t.Run(tc.name, func(t *testing.T) {
			pa, pb := freePort(t), freePort(t)
			lo := netip.MustParseAddr("127.0.0.1")
			a := NewConnected(netip.AddrPortFrom(lo, pb))
			b := NewConnected(netip.AddrPortFrom(lo, pa))
			a.NoOffload, b.NoOffload = noOffload, noOffload
			if _, _, err := a.Open(pa); err != nil {
				t.Fatal(err)
			}
			defer a.Close()
			fns, _, err := b.Open(pb)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			// Like wireguard-go's buffers: short slices of 64 KiB arrays.
			var bufs [][]byte
			room := 65535
			if tc.tight {
				room = 1400
			}
			for i := range 100 {
				buf := make([]byte, 1400, room)
				buf[0], buf[1399] = byte(i), byte(i)
				bufs = append(bufs, buf)
			}
			bufs = append(bufs, append(make([]byte, 0, 65535), []byte("tail")...))
			ep, _ := a.ParseEndpoint(netip.AddrPortFrom(lo, pb).String())
			if err := a.Send(bufs, ep); err != nil {
				t.Fatal(err)
			}
			packets := make([][]byte, 128)
			for i := range packets {
				packets[i] = make([]byte, 65535)
			}
			sizes := make([]int, 128)
			eps := make([]conn.Endpoint, 128)
			var got [][]byte
			deadline := time.Now().Add(5 * time.Second)
			for len(got) < len(bufs) && time.Now().Before(deadline) {
				n, err := fns[0](packets, sizes, eps)
				if err != nil {
					t.Fatal(err)
				}
				for i := range n {
					got = append(got, append([]byte(nil), packets[i][:sizes[i]]...))
				}
			}
			if len(got) != len(bufs) {
				t.Fatalf("received %d datagrams, want %d", len(got), len(bufs))
			}
			for i := range 100 {
				if len(got[i]) != 1400 || got[i][0] != byte(i) || got[i][1399] != byte(i) {
					t.Fatalf("datagram %d: %d bytes, first %d", i, len(got[i]), got[i][0])
				}
			}
			if string(got[100]) != "tail" {
				t.Fatalf("last datagram %q", got[100])
			}
		})
	}
}

// coalesce makes each run of equal datagrams one message whose buffers
// are the datagrams themselves, whatever room they have behind them: no
// byte is copied, and a buffer without spare room still joins a run.
func TestCoalesce(t *testing.T) {
	perRun := min(maxSegments, maxCoalesced/1400)
	for _, tc := range []struct {
		name  string
		sizes []int
		want  []int // datagrams per message
	}{
		{"one", []int{1400}, []int{1}},
		{"a train", slices.Repeat([]int{1400}, 100), []int{perRun, perRun, 100 - 2*perRun}},
		{"a short one ends a run", append(slices.Repeat([]int{1400}, 3), 600, 1400), []int{4, 1}},
		{"a longer one starts a run", []int{600, 1400, 1400}, []int{1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var bufs [][]byte
			for _, n := range tc.sizes {
				bufs = append(bufs, make([]byte, n)) // no room behind any
			}
			sb := new(sendBufs)
			for i := range sb.oob {
				sb.oob[i] = make([]byte, oobSize)
			}
			msgs, used := coalesce(bufs, sb)
			if used != len(bufs) || msgs != len(tc.want) {
				t.Fatalf("coalesce made %d messages of %d datagrams; want %d of %d", msgs, used, len(tc.want), len(bufs))
			}
			next := 0
			for i, n := range tc.want {
				got := sb.msgs[i].Buffers
				if len(got) != n {
					t.Fatalf("message %d holds %d datagrams; want %d", i, len(got), n)
				}
				for j := range got {
					if &got[j][0] != &bufs[next][0] || len(got[j]) != len(bufs[next]) {
						t.Fatalf("message %d, buffer %d is not datagram %d itself", i, j, next)
					}
					next++
				}
				if sized := len(sb.msgs[i].OOB) > 0; oobSize > 0 && sized != (n > 1) {
					t.Fatalf("message %d of %d datagrams: segment size set %v", i, n, sized)
				}
			}
		})
	}
}
