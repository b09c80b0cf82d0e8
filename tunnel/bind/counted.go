package bind

import (
	"time"

	"golang.zx2c4.com/wireguard/conn"
)

// Counted wraps a bind and reports how many datagrams each Send carried
// and each receive got: wireguard-go holds a 64 KiB buffer for every
// packet between reading it from the TUN and sending it, and between
// receiving it and writing it to the TUN, so the netstack paces its reads
// by what has been sent (netstack.Stack.Sent) and the receives by what it
// has been written (netstack.Stack.Received, AwaitInbound).
type Counted struct {
	conn.Bind
	Sent func(n int)
	// Receiving, if set, is called before each receive with that receive
	// function's own timer, and may wait; Received, if set, is told how
	// many datagrams the receive got.
	Receiving func(timer **time.Timer)
	Received  func(n int)
}

// Counting wraps b so that sent is told of every datagram it sends.
func Counting(b conn.Bind, sent func(n int)) *Counted { return &Counted{Bind: b, Sent: sent} }

// Send implements conn.Bind. Datagrams count as sent even when the send
// fails: their buffers are given back either way.
func (c *Counted) Send(bufs [][]byte, ep conn.Endpoint) error {
	err := c.Bind.Send(bufs, ep)
	c.Sent(len(bufs))
	return err
}

// Open implements conn.Bind: each receive function is counted.
func (c *Counted) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := c.Bind.Open(port)
	if err != nil || (c.Receiving == nil && c.Received == nil) {
		return fns, actual, err
	}
	for i, fn := range fns {
		var timer *time.Timer // this receive function's: one goroutine calls it
		fns[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			if c.Receiving != nil {
				c.Receiving(&timer)
			}
			n, err := fn(packets, sizes, eps)
			if c.Received != nil && n > 0 {
				c.Received(n)
			}
			return n, err
		}
	}
	return fns, actual, nil
}
