package bind

import "golang.zx2c4.com/wireguard/conn"

// Counted wraps a bind and reports how many datagrams each Send carried:
// wireguard-go holds a 64 KiB buffer for every packet between reading it
// from the TUN and sending it, so the netstack paces its reads by what has
// been sent (netstack.Stack.Sent).
type Counted struct {
	conn.Bind
	Sent func(n int)
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
