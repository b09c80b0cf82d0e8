package worker

import (
	"net"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// udpPath is a UDP proxy on loopback between bunny and relay whose flows
// (one per bunny socket) can be cut: a path that dies, while a new
// connection gets through.
type udpPath struct {
	t  *testing.T
	pc net.PacketConn
	to *net.UDPAddr

	mu    sync.Mutex
	flows map[string]*udpFlow
}

type udpFlow struct {
	up  *net.UDPConn
	cut bool
}

func newUDPPath(t *testing.T, to string) *udpPath {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ua, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		t.Fatal(err)
	}
	p := &udpPath{t: t, pc: pc, to: ua, flows: map[string]*udpFlow{}}
	var wg sync.WaitGroup
	wg.Go(p.serve)
	t.Cleanup(func() {
		_ = pc.Close()
		p.mu.Lock()
		for _, f := range p.flows {
			_ = f.up.Close()
		}
		p.mu.Unlock()
		wg.Wait()
	})
	return p
}

func (p *udpPath) serve() {
	buf := make([]byte, 65536)
	for {
		n, from, err := p.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		f := p.flows[from.String()]
		if f == nil {
			up, err := net.DialUDP("udp", nil, p.to)
			if err != nil {
				p.mu.Unlock()
				p.t.Errorf("proxy dial: %v", err)
				return
			}
			f = &udpFlow{up: up}
			p.flows[from.String()] = f
			go p.back(f, from)
		}
		cut := f.cut
		p.mu.Unlock()
		if !cut {
			_, _ = f.up.Write(buf[:n])
		}
	}
}

// back carries relay's datagrams of one flow to bunny while it is not cut.
func (p *udpPath) back(f *udpFlow, to net.Addr) {
	buf := make([]byte, 65536)
	for {
		n, err := f.up.Read(buf)
		if err != nil {
			return
		}
		p.mu.Lock()
		cut := f.cut
		p.mu.Unlock()
		if !cut {
			_, _ = p.pc.WriteTo(buf[:n], to)
		}
	}
}

// cutAll cuts every flow so far, both ways.
func (p *udpPath) cutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, f := range p.flows {
		f.cut = true
	}
}

// A Lease answer that relay wrote as bunny's path died never arrives; the
// connection ends (no probe answered) and bunny dials again. Its lease
// session tells relay that it never read that answer, so the job comes
// back at attempt 1 at once, instead of after its 30 s lease expires at
// attempt 2.
func TestLostLeaseAnswerRunsAtFirstAttempt(t *testing.T) {
	f := &inFlight{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	var path *udpPath
	e := setup(t, map[string]handler.Handler{"web": &handler.HTTP{URL: srv.URL, Timeout: 10 * time.Second, MaxOutput: 100}},
		func(o *Options) {
			o.LeaseWait = 20 * time.Second
			path = newUDPPath(t, o.Addr)
			o.Addr = path.pc.LocalAddr().String()
		})
	e.run()
	testutil.Eventually(t, 10*time.Second, "the worker to connect and poll", func() bool {
		return e.w.Ready() == nil && e.relay.Metric("relay_lease_waiters", nil) == 1
	})
	path.cutAll()
	ids := e.relay.Enqueue(queue.NewJob{Queue: "web", Payload: []byte("x"), LeaseDuration: 30 * time.Second})
	start := time.Now()
	testutil.Eventually(t, 5*time.Second, "relay to answer the poll into the dead path", func() bool {
		return e.relay.Metric("relay_calls_total", map[string]string{"call": "lease", "code": "OK"}) >= 1
	})
	for _, j := range e.relay.WaitTerminal(20*time.Second, ids...) {
		if j.State != store.Succeeded || j.Attempt != 1 {
			t.Errorf("job %s: %s at attempt %d, want succeeded at attempt 1", j.ID, j.State, j.Attempt)
		}
	}
	if n := e.relay.Metric("relay_lease_answers_lost_total", nil); n != 1 {
		t.Errorf("relay counted %v lost lease answers, want 1", n)
	}
	if n := f.total.Load(); n != 1 {
		t.Errorf("the handler ran %d times, want once", n)
	}
	t.Logf("the job succeeded %v after its answer was lost, at attempt 1 (reconnects: %v)", time.Since(start).Round(time.Millisecond), val(e.w.m.reconnects))
}
