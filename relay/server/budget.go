package server

import (
	"context"
	"sync"
)

// byteBudget is the memory every connection's request frames may take
// while being read: a frame's declared length is taken from it before its
// body is read and given back when its call is done. A stream that must
// wait leaves its bytes unread in QUIC, whose flow control then stops the
// worker from sending more.
type byteBudget struct {
	mu      sync.Mutex
	free    int
	changed chan struct{} // closed (and replaced) when bytes are given back
}

func newByteBudget(n int) *byteBudget {
	return &byteBudget{free: n, changed: make(chan struct{})}
}

// take waits until n bytes are free, or ctx ends.
func (b *byteBudget) take(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (b *byteBudget) give(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free += n
	close(b.changed)
	b.changed = make(chan struct{})
}
