package client_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// udpProxy stands in for a gateway's forward port: datagrams from its one
// client go to relay from a socket of its own, and back. Closing it is a
// gateway dying: nothing answers on that path any more.
type udpProxy struct {
	ln, up *net.UDPConn
	mu     sync.Mutex
	client *net.UDPAddr
	wg     sync.WaitGroup
}

func startProxy(t *testing.T, to string) *udpProxy {
	t.Helper()
	ln, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ra, err := net.ResolveUDPAddr("udp4", to)
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp4", nil, ra)
	if err != nil {
		t.Fatal(err)
	}
	p := &udpProxy{ln: ln, up: up}
	p.wg.Go(func() {
		b := make([]byte, 2048)
		for {
			n, from, err := ln.ReadFromUDP(b)
			if err != nil {
				return
			}
			p.mu.Lock()
			p.client = from
			p.mu.Unlock()
			_, _ = up.Write(b[:n])
		}
	})
	p.wg.Go(func() {
		b := make([]byte, 2048)
		for {
			n, err := up.Read(b)
			if err != nil {
				return
			}
			p.mu.Lock()
			c := p.client
			p.mu.Unlock()
			if c != nil {
				_, _ = ln.WriteToUDP(b[:n], c)
			}
		}
	})
	t.Cleanup(p.close)
	return p
}

func (p *udpProxy) addr() string { return p.ln.LocalAddr().String() }

func (p *udpProxy) close() {
	_ = p.ln.Close()
	_ = p.up.Close()
	p.wg.Wait()
}

// Two ways to one relay, as through two gateways: when the one in use
// dies, the same connection moves to the other (relay validates the new
// path) and a lease that was waiting carries on. No new handshake, nothing
// redelivered.
func TestPathsMoveOnSilence(t *testing.T) {
	id := testutil.Identity(t, "w")
	r := relaytest.Start(t, relaytest.Options{Worker: id, Queues: []string{"q"}})
	a, b := startProxy(t, r.Addr), startProxy(t, r.Addr)
	logs := &testutil.Buffer{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Addrs: []string{a.addr(), b.addr()}, Identity: id, RelayPin: r.ID.Pin(), Logger: logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Path() != a.addr() {
		t.Fatalf("path %s, want the first address %s", c.Path(), a.addr())
	}
	ids := r.Enqueue(queue.NewJob{Queue: "q", Payload: []byte("before")})
	jobs, err := c.Lease(ctx, client.LeaseOptions{Max: 1, Wait: time.Second})
	if err != nil || len(jobs) != 1 || jobs[0].ID != ids[0] {
		t.Fatalf("lease: %v %v", jobs, err)
	}

	a.close()
	killed := time.Now()
	// A long poll waiting on the dead path is answered on the new one.
	done := make(chan error, 1)
	var got []client.Job
	go func() {
		var err error
		got, err = c.Lease(ctx, client.LeaseOptions{Max: 1, Wait: 20 * time.Second})
		done <- err
	}()
	time.Sleep(100 * time.Millisecond)
	later := r.Enqueue(queue.NewJob{Queue: "q", Payload: []byte("after")})
	if err := <-done; err != nil {
		t.Fatalf("lease across the move: %v\nlog:\n%s", err, logs.String())
	}
	pause := time.Since(killed)
	if len(got) != 1 || got[0].ID != later[0] || got[0].Lease.Attempt != 1 {
		t.Fatalf("leased %+v, want %s at attempt 1", got, later[0])
	}
	if _, err := c.Complete(ctx, jobs[0].Lease, []byte("ok")); err != nil {
		t.Fatalf("completing the lease taken on the old path: %v", err)
	}
	if _, err := c.Complete(ctx, got[0].Lease, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if i, moves := c.PathIndex(); i != 1 || moves < 1 || c.Path() != b.addr() {
		t.Errorf("path index %d after %d moves (%s), want 1 (%s)", i, moves, c.Path(), b.addr())
	}
	select {
	case <-c.Done():
		t.Fatalf("the connection ended: %v", c.Err())
	default:
	}
	t.Logf("moved to the second address; the lease waiting across the move answered %v after the first path died", pause.Round(time.Millisecond))
	if !logs.Contains("moving to the next address") {
		t.Errorf("no log line for the move:\n%s", logs.String())
	}
}

// A client that only waits (no calls) notices a relay killed and restarted
// on its port within a probe or two of the restart: the probe is large
// enough to be answered with a stateless reset. Without probes it would
// send only keep-alive PINGs, too small for a reset, and learn nothing
// until the idle timeout.
func TestProbeNoticesRestartedRelay(t *testing.T) {
	id := testutil.Identity(t, "w")
	r := relaytest.Start(t, relaytest.Options{Worker: id, Queues: []string{"q"}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Addr: r.Addr, Identity: id, RelayPin: r.ID.Pin()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r.Kill()
	time.Sleep(300 * time.Millisecond)
	r.Start()
	restarted := time.Now()
	select {
	case <-c.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("the client did not notice the restarted relay within 20 s")
	}
	took := time.Since(restarted)
	t.Logf("the client noticed the restarted relay %v after it started (%v)", took.Round(time.Millisecond), c.Err())
	if !errors.Is(c.Err(), client.ErrConnectionLost) {
		t.Errorf("Err = %v, want a lost connection", c.Err())
	}
}

// A relay that stops answering altogether (its packets dropped, no reset)
// ends the connection at the probe timeout.
func TestProbeTimeoutEndsConnection(t *testing.T) {
	id := testutil.Identity(t, "w")
	r := relaytest.Start(t, relaytest.Options{Worker: id, Queues: []string{"q"}})
	p := startProxy(t, r.Addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Addr: p.addr(), Identity: id, RelayPin: r.ID.Pin(), ProbeEvery: 100 * time.Millisecond, ProbeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	p.close()
	start := time.Now()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the connection did not end within 10 s of its path going silent")
	}
	if err := c.Err(); !errors.Is(err, client.ErrConnectionLost) || !strings.Contains(err.Error(), "liveness probes") {
		t.Errorf("Err = %v, want a lost connection naming the probes", err)
	}
	t.Logf("ended %v after the path went silent", time.Since(start).Round(time.Millisecond))
}
