package bind

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/tunnel-dev/tunnel/tunnel/handshake"
)

// Datagrams of every shape reach wireguard-go unchanged through a watched
// real socket; only the initiation-shaped one is shown to Seen, with the
// address it came from.
func TestWatchInitiations(t *testing.T) {
	var mu sync.Mutex
	var seen [][]byte
	var from []string
	w := WatchInitiations(conn.NewStdNetBind(), func(msg []byte, ep conn.Endpoint) {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, bytes.Clone(msg))
		from = append(from, ep.DstToString())
	})
	fns, port, err := w.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()

	initiation := make([]byte, handshake.InitiationSize)
	initiation[0] = 1
	for i := 4; i < len(initiation); i++ {
		initiation[i] = byte(i)
	}
	notReserved := bytes.Clone(initiation)
	notReserved[1] = 1
	response := bytes.Clone(initiation[:92])
	response[0] = 2
	long := append(bytes.Clone(initiation), 0)
	sent := [][]byte{response, notReserved, long, initiation}

	c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: int(port)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, d := range sent {
		if _, err := c.Write(d); err != nil {
			t.Fatal(err)
		}
	}
	// Read until all four arrived on one of the receive functions (v4).
	var got [][]byte
	done := make(chan struct{})
	go func() {
		defer close(done)
		bufs := make([][]byte, w.BatchSize())
		for i := range bufs {
			bufs[i] = make([]byte, 2048)
		}
		sizes := make([]int, len(bufs))
		eps := make([]conn.Endpoint, len(bufs))
		for len(got) < len(sent) {
			n, err := fns[0](bufs, sizes, eps)
			if err != nil {
				return
			}
			for i := range n {
				got = append(got, bytes.Clone(bufs[i][:sizes[i]]))
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		w.Close()
		<-done
		t.Fatalf("received %d of %d datagrams", len(got), len(sent))
	}
	for i := range sent {
		if i >= len(got) || !bytes.Equal(got[i], sent[i]) {
			t.Fatalf("datagram %d changed on its way to wireguard-go", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 1 || !bytes.Equal(seen[0], initiation) {
		t.Fatalf("Seen got %d datagrams, want only the initiation", len(seen))
	}
	if from[0] != c.LocalAddr().String() {
		t.Fatalf("Seen was told the initiation came from %s, not %s", from[0], c.LocalAddr())
	}
}
