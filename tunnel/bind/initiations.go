package bind

import (
	"golang.zx2c4.com/wireguard/conn"

	"github.com/tunnel-dev/tunnel/tunnel/handshake"
)

// Watching wraps a bind and shows every received datagram shaped as a
// WireGuard handshake initiation to Seen before wireguard-go reads it, so
// that the gateway can later name the key of an initiation wireguard-go
// refused. The check per datagram is a length and four bytes; nothing is
// decrypted here.
type Watching struct {
	conn.Bind
	// Seen gets the initiation and where it came from. It must not keep
	// msg (the buffer is reused) and must not block.
	Seen func(msg []byte, from conn.Endpoint)
}

// WatchInitiations wraps b so that seen is shown every initiation it
// receives.
func WatchInitiations(b conn.Bind, seen func(msg []byte, from conn.Endpoint)) *Watching {
	return &Watching{Bind: b, Seen: seen}
}

// Open implements conn.Bind.
func (w *Watching) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := w.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		fns[i] = w.receive(fn)
	}
	return fns, actual, nil
}

func (w *Watching) receive(fn conn.ReceiveFunc) conn.ReceiveFunc {
	return func(bufs [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
		n, err := fn(bufs, sizes, eps)
		for i := range n {
			if sizes[i] == handshake.InitiationSize && handshake.IsInitiation(bufs[i][:sizes[i]]) {
				w.Seen(bufs[i][:sizes[i]], eps[i])
			}
		}
		return n, err
	}
}
