package pinger

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

// Pinger sends a datagram every interval and records the longest silence
// between echoes.
type Pinger struct {
	Sent, Got atomic.Int64

	stop chan struct{}
	done sync.WaitGroup

	mu      sync.Mutex
	last    time.Time
	longest time.Duration
}

// Start pings addr (a UDP echo, usually behind a tunnel) every interval
// until the test ends or Halt.
func Start(t testing.TB, addr string, every time.Duration) *Pinger {
	t.Helper()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	p := &Pinger{stop: make(chan struct{}), last: time.Now()}
	p.done.Add(2)
	go func() {
		defer p.done.Done()
		tk := time.NewTicker(every)
		defer tk.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-tk.C:
				_, _ = c.Write(fmt.Appendf(nil, "%d", p.Sent.Add(1)))
			}
		}
	}()
	go func() {
		defer p.done.Done()
		buf := make([]byte, 100)
		for {
			_ = c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, err := c.Read(buf)
			select {
			case <-p.stop:
				return
			default:
			}
			if err != nil {
				continue
			}
			p.Got.Add(1)
			now := time.Now()
			p.mu.Lock()
			p.longest = max(p.longest, now.Sub(p.last))
			p.last = now
			p.mu.Unlock()
		}
	}()
	t.Cleanup(func() { p.Halt(); c.Close() })
	return p
}

// Halt stops pinging.
func (p *Pinger) Halt() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.done.Wait()
}

// Gap is the longest silence so far, counting the one in progress.
func (p *Pinger) Gap() time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.longest, time.Since(p.last))
}

// ResetGap starts measuring afresh.
func (p *Pinger) ResetGap() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.longest, p.last = 0, time.Now()
}

// Flowing waits until n more echoes arrive, failing t after d.
func (p *Pinger) Flowing(t testing.TB, d time.Duration, n int64, what string) {
	t.Helper()
	before := p.Got.Load()
	testutil.Eventually(t, d, what+": echoes through the tunnel", func() bool { return p.Got.Load() >= before+n })
}
