package forward

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// TCP accepts connections on Listener and joins each to a connection from
// Dial.
type TCP struct {
	Name     string
	Listener net.Listener
	// Dial opens the other side. It is given a context bounded by
	// DialTimeout.
	Dial        func(ctx context.Context) (net.Conn, error)
	DialTimeout time.Duration
	// MaxConns caps concurrent connections; more are closed at once.
	MaxConns int
	Stats    *Stats
	Logger   *slog.Logger

	mu    sync.Mutex
	conns map[net.Conn]struct{} // both sides of every flow, for Shutdown
	flows int
	wg    sync.WaitGroup
}

// Serve accepts until the listener is closed or ctx is done. It returns
// without waiting for connections in flight; Shutdown does that.
func (p *TCP) Serve(ctx context.Context) error {
	p.mu.Lock()
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	stop := context.AfterFunc(ctx, func() { p.Listener.Close() })
	defer stop()
	var backoff time.Duration
	for {
		c, err := p.Listener.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			// A transient accept error (out of file descriptors): back off.
			backoff = min(max(backoff*2, 5*time.Millisecond), time.Second)
			p.Logger.Warn("accept failed", "rule", p.Name, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-ctx.Done():
				return nil
			}
		}
		backoff = 0
		// Counted in wg before it is visible as active: a Shutdown that
		// sees the connection must also wait for it.
		p.wg.Add(1)
		if !p.track(c) {
			p.wg.Done()
			p.Stats.drop(DropConnLimit)
			c.Close()
			continue
		}
		go func() {
			defer p.wg.Done()
			defer p.untrack(c)
			p.handle(ctx, c)
		}()
	}
}

func (p *TCP) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.MaxConns > 0 && p.flows >= p.MaxConns {
		return false
	}
	p.flows++
	p.conns[c] = struct{}{}
	p.Stats.opened()
	return true
}

func (p *TCP) untrack(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.flows--
	p.mu.Unlock()
	p.Stats.closed()
}

// Shutdown waits for connections in flight to finish until ctx is done,
// then closes what is left.
func (p *TCP) Shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	<-done
}

func (p *TCP) handle(ctx context.Context, in net.Conn) {
	dctx, cancel := context.WithTimeout(ctx, p.DialTimeout)
	out, err := p.Dial(dctx)
	cancel()
	if err != nil {
		p.Stats.drop(DropDialFailed)
		p.Logger.Warn("dial failed", "rule", p.Name, "from", addrString(in.RemoteAddr()), "err", err)
		in.Close()
		return
	}
	// Closing out when in is untracked by Shutdown: the copy loops then end.
	p.mu.Lock()
	p.conns[out] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, out)
		p.mu.Unlock()
	}()
	Join(in, out, &p.Stats.bytesUp, &p.Stats.bytesDown)
}

// addrString is a's text, or "unknown" when a is nil: a netstack
// connection whose peer has already reset has no remote address.
func addrString(a net.Addr) string {
	if a == nil {
		return "unknown"
	}
	return a.String()
}
