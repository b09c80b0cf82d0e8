package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Liveness probing. A worker that only long-polls sends nothing but
// QUIC's keep-alive PINGs, and a PING packet is too small (< 42 bytes)
// for a restarted relay to answer with a stateless reset: the worker would
// not learn that its connection is gone until the idle timeout. So the
// Client sends a probe — an empty heartbeat, padded past that size — every
// ProbeEvery: a live relay answers it, a restarted one (sharing the old
// one's reset key) resets the connection at the first probe, and a path
// that stays silent for ProbeTimeout ends the connection, so the worker
// dials again at once.
const (
	DefaultProbeEvery   = 500 * time.Millisecond
	DefaultProbeTimeout = 4 * time.Second
	// probePadding makes a probe's packet larger than QUIC's smallest
	// stateless reset (protocol.MinStatelessResetSize, 42 bytes), which
	// a server sends only in answer to a larger packet.
	probePadding = 48
	// probePaddingField is the protobuf field the padding travels in:
	// unknown to relay, which skips unknown fields.
	probePaddingField = 2047
)

// errProbeTimeout ends a connection whose relay stopped answering.
var errProbeTimeout = errors.New("relay stopped answering liveness probes")

// probe runs until the connection ends, closing it when relay answers no
// probe within timeout.
func (c *Client) probe(every, timeout time.Duration) {
	ctx := c.conn.Context()
	t := time.NewTimer(every)
	defer t.Stop()
	var moved <-chan struct{} // nil with one address: never ready
	if c.paths != nil {
		moved = c.paths.moved
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-moved:
		}
		start := time.Now()
		pctx, cancel := context.WithTimeout(ctx, timeout)
		_, err := c.heartbeat(pctx, nil, false, true)
		cancel()
		if err != nil && ctx.Err() == nil {
			if errors.Is(err, context.DeadlineExceeded) {
				c.fail(fmt.Errorf("%w: no answer in %s", errProbeTimeout, timeout))
				return
			}
			// Any other answer (overloaded, shutting down) is an answer:
			// relay is there.
		}
		t.Reset(max(0, every-time.Since(start)))
	}
}

// fail ends the connection with a local reason that Err reports.
func (c *Client) fail(err error) {
	c.failMu.Lock()
	if c.failErr == nil {
		c.failErr = err
	}
	c.failMu.Unlock()
	_ = c.conn.CloseWithError(0, err.Error())
}

// failure is the local reason the connection was ended, if any.
func (c *Client) failure() error {
	c.failMu.Lock()
	defer c.failMu.Unlock()
	return c.failErr
}

// padProbe pads a probe heartbeat with an unknown field.
func padProbe(hr *proto.HeartbeatRequest) {
	b := protowire.AppendTag(nil, probePaddingField, protowire.BytesType)
	b = protowire.AppendBytes(b, make([]byte, probePadding))
	hr.ProtoReflect().SetUnknown(b)
}
