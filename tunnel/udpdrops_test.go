package tunnel

import (
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// A socket whose receive buffer overflows shows in udpDrops.
func TestUDPDropsCounted(t *testing.T) {
	if _, err := os.Stat("/proc/self/net/udp"); err != nil {
		t.Skip("no /proc/self/net/udp on this system")
	}
	rx, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer rx.Close()
	rc, _ := rx.SyscallConn()
	_ = rc.Control(func(fd uintptr) { _ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
	before := udpDrops()
	tx, err := net.DialUDP("udp4", nil, rx.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Close()
	msg := make([]byte, 1000)
	for range 200 { // nobody reads rx: its small buffer overflows
		_, _ = tx.Write(msg)
	}
	deadline := time.Now().Add(2 * time.Second)
	for udpDrops() <= before {
		if time.Now().After(deadline) {
			t.Fatalf("drops stayed at %d", before)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
