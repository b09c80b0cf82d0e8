package forward

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

type closeWriter interface{ CloseWrite() error }

// Each direction's copy buffer starts small, so that an idle flow costs
// little, and doubles whenever a read fills it, up to a size that moves a
// TCP window in few calls.
const (
	copyBufMin = 4 << 10
	copyBufMax = 256 << 10
)

// Join copies a→b and b→a until both directions end, honouring half-close:
// when one side finishes sending, the other side's write half is closed and
// the reverse direction carries on. Bytes are added to up (a→b) and down
// (b→a) as they move. Both connections are closed on return.
func Join(a, b net.Conn, up, down *atomic.Uint64) {
	var wg sync.WaitGroup
	wg.Add(2)
	var once sync.Once
	abort := func() {
		once.Do(func() {
			a.Close()
			b.Close()
		})
	}
	pipe := func(dst, src net.Conn, n *atomic.Uint64) {
		defer wg.Done()
		err := copyCounting(dst, src, n)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			// A reset or a write failure: the flow is over both ways.
			abort()
			return
		}
		if cw, ok := dst.(closeWriter); ok {
			if cw.CloseWrite() == nil {
				return
			}
		}
		abort()
	}
	// One direction in a goroutine of its own, the other in this one: an
	// idle flow costs two goroutines in all, counting the caller's.
	go pipe(b, a, up)
	pipe(a, b, down)
	wg.Wait()
	abort()
}

func copyCounting(dst io.Writer, src io.Reader, n *atomic.Uint64) error {
	buf := make([]byte, copyBufMin)
	for {
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(uint64(nw))
			if werr != nil {
				return werr
			}
			if nw != nr {
				return io.ErrShortWrite
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
		if nr == len(buf) && len(buf) < copyBufMax {
			buf = make([]byte, 2*len(buf)) // the flow is busy: read more at once
		}
	}
}
