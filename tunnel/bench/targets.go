package bench

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
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
	go func() {
		defer t.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.wg.Add(1)
			go func() {
				defer t.wg.Done()
				defer c.Close()
				n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
				_ = binary.Write(c, binary.BigEndian, n)
			}()
		}
	}()
	go func() {
		defer t.wg.Done()
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return t, nil
}

func (t *targets) Close() {
	t.tcp.Close()
	t.udp.Close()
	t.wg.Wait()
}

// ServeTargets runs the sink and echo on the given addresses until the
// listener fails: `tunnel bench targets`, for measuring through a tunnel
// that is already running (expose the two ports, then `tunnel bench
// --through`).
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
	errc := make(chan error, 1)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				errc <- err
				return
			}
			go func() {
				defer c.Close()
				n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
				_ = binary.Write(c, binary.BigEndian, n)
			}()
		}
	}()
	go func() {
		buf := make([]byte, 65535)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				errc <- err
				return
			}
			_, _ = pc.WriteTo(buf[:n], from)
		}
	}()
	return <-errc
}
