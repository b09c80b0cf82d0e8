package tunnel_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"github.com/tunnel-dev/tunnel/tunnel"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestTCPEchoThroughForwardAndExpose(t *testing.T) {
	p := startPair(t, pairOpts{})
	msg := []byte("hello through the tunnel")
	expectEcho(t, sendEcho(t, p.forward(t, "relay-tcp"), msg), msg, "")
}

func TestUDPEchoThroughForwardAndExpose(t *testing.T) {
	t.Run("fast path", func(t *testing.T) { testUDPEcho(t, tunnel.Tuning{}) })
	t.Run("through gVisor", func(t *testing.T) { testUDPEcho(t, tunnel.Tuning{NoFastUDP: true}) })
}

func testUDPEcho(t *testing.T, tuning tunnel.Tuning) {
	p := startPair(t, pairOpts{tuning: tuning})
	c, err := net.Dial("udp", p.forward(t, "relay-udp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := range 20 {
		msg := fmt.Appendf(nil, "datagram %d", i)
		got, err := udpEcho(c, msg, 10, time.Second)
		if err != nil {
			t.Fatalf("round trip %d: %v", i, err)
		}
		if !bytes.Equal(got, msg) {
			t.Fatalf("echo = %q, want %q", got, msg)
		}
	}
	st := p.aks.Status()
	for _, r := range st.Rules {
		if r.Name == "relay-udp" && (r.Active != 1 || r.BytesUp == 0 || r.BytesDown == 0) {
			t.Errorf("aks rule status = %+v, want one active session with bytes both ways", r)
		}
	}
}

func TestLargeTransferChecksummed(t *testing.T) {
	size := 256 << 20
	if testing.Short() {
		size = 16 << 20
	}
	p := startPair(t, pairOpts{})
	c, err := net.DialTimeout("tcp", p.forward(t, "relay-tcp"), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
	want := sha256.New()
	got := sha256.New()
	var wg sync.WaitGroup
	wg.Add(1)
	var n int64
	var rerr error
	go func() {
		defer wg.Done()
		n, rerr = io.Copy(got, c)
	}()
	src := io.TeeReader(io.LimitReader(rand.Reader, int64(size)), want)
	if _, err := io.Copy(c, src); err != nil {
		t.Fatalf("sending: %v", err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if rerr != nil {
		t.Fatalf("receiving: %v", rerr)
	}
	if n != int64(size) {
		t.Fatalf("received %d bytes, want %d", n, size)
	}
	if !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatal("SHA-256 of the echo differs from what was sent")
	}
}

func TestConcurrentFlows(t *testing.T) {
	p := startPair(t, pairOpts{})
	const flows = 32
	var wg sync.WaitGroup
	errs := make(chan error, 2*flows)
	for i := range flows {
		wg.Add(2)
		go func() {
			defer wg.Done()
			c, err := net.DialTimeout("tcp", p.forward(t, "relay-tcp"), 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(60 * time.Second))
			msg := bytes.Repeat(fmt.Appendf(nil, "flow %d ", i), 10000)
			go func() { _, _ = c.Write(msg); _ = c.(*net.TCPConn).CloseWrite() }()
			got, err := io.ReadAll(c)
			if err != nil {
				errs <- fmt.Errorf("tcp flow %d: %w", i, err)
			} else if !bytes.Equal(got, msg) {
				errs <- fmt.Errorf("tcp flow %d: echo differs (%d bytes, want %d)", i, len(got), len(msg))
			}
		}()
		go func() {
			defer wg.Done()
			c, err := net.Dial("udp", p.forward(t, "relay-udp"))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for j := range 10 {
				msg := fmt.Appendf(nil, "udp flow %d message %d", i, j)
				got, err := udpEcho(c, msg, 10, time.Second)
				if err != nil {
					errs <- fmt.Errorf("udp flow %d: %w", i, err)
					return
				}
				if !bytes.Equal(got, msg) {
					errs <- fmt.Errorf("udp flow %d: got %q", i, got)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, r := range p.eks.Status().Rules {
		if r.Name == "relay-udp" && r.Flows < flows {
			t.Errorf("eks saw %d UDP sessions, want %d", r.Flows, flows)
		}
	}
}

func TestEmbeddedDialAndListen(t *testing.T) {
	p := startPair(t, pairOpts{})
	// eks listens on its tunnel address; aks dials it through the tunnel.
	ln, err := p.eks.Listen("tcp", ":9100")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = c.Write([]byte("from eks"))
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := p.aks.Dial(ctx, "tcp", "10.99.0.1:9100")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "from eks" {
		t.Fatalf("read %q, %v", got, err)
	}
	if _, err := p.aks.Dial(ctx, "tcp", "10.99.0.7:9100"); err == nil {
		t.Fatal("dialled an address that is no peer's")
	}
	if _, err := p.eks.Listen("tcp", ":8000"); err == nil {
		t.Fatal("listened on a port an expose rule holds")
	}
}
