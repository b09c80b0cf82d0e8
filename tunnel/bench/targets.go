package bench

import (
	"net"
	"sync"

	"github.com/tunnel-dev/tunnel/internal/echo"
)

// targets are what the tunnel reaches: a TCP sink that reads a connection
// to EOF and answers with the byte count, and a UDP echo.
type targets struct {
	tcp net.Listener
	udp net.PacketConn
	wg  sync.WaitGroup
}

func startTargets() (*targets, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, err
	}
	t := &targets{tcp: ln, udp: pc}
	t.wg.Add(2)
	go func() { defer t.wg.Done(); echo.Sink(ln) }()
	go func() { defer t.wg.Done(); echo.UDP(pc) }()
	return t, nil
}

func (t *targets) Close() {
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
}

// ServeTargets runs the sink and echo on the given addresses until either
// fails: `tunnel bench targets`, for measuring through a tunnel that is
// already running (expose the two ports, then `tunnel bench --through-*`).
func ServeTargets(tcpAddr, udpAddr string) error {
	ln, err := net.Listen("tcp", tcpAddr)
	if err != nil {
		return err
	}
	pc, err := net.ListenPacket("udp", udpAddr)
	if err != nil {
		ln.Close()
		return err
	}
	t := &targets{tcp: ln, udp: pc}
	defer t.Close()
	done := make(chan struct{}, 2)
	go func() { echo.Sink(ln); done <- struct{}{} }()
	go func() { echo.UDP(pc); done <- struct{}{} }()
	<-done
	return nil
}

func netListenPacket() (net.PacketConn, error) { return net.ListenPacket("udp", "127.0.0.1:0") }
