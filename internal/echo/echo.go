// Package echo serves the small services the tunnel is tested and measured
// against: a TCP echo, a TCP sink that answers with the count of bytes it
// read, and a UDP echo. Each serves until its listener is closed and
// returns once its connections have ended.
package echo

import (
	"encoding/binary"
	"io"
	"net"
	"sync"
)

// TCP echoes each connection until EOF, then half-closes it.
func TCP(ln net.Listener) {
	serve(ln, func(c net.Conn) {
		_, _ = io.Copy(c, c)
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	})
}

// Sink reads each connection to EOF, then writes the number of bytes it
// read (8 bytes, big endian), so that a sender knows everything arrived.
func Sink(ln net.Listener) {
	serve(ln, func(c net.Conn) {
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, 256<<10))
		_ = binary.Write(c, binary.BigEndian, n)
	})
}

func serve(ln net.Listener, handle func(net.Conn)) {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			handle(c)
		}()
	}
}

// UDP echoes each datagram to its sender.
func UDP(pc net.PacketConn) {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}
