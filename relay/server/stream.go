package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// call is one request being served.
type call struct {
	s      *Server
	ctx    context.Context
	worker *auth.Worker
	log    *slog.Logger
}

// handleStream serves one call: read the request, authorise, act, answer.
func (s *Server) handleStream(ctx context.Context, cs *connState, str *quic.Stream, log *slog.Logger) {
	pin := cs.pin
	start := time.Now()
	_ = str.SetReadDeadline(start.Add(s.opts.RequestTimeout))
	var req proto.Request
	rctx, rcancel := context.WithDeadline(ctx, start.Add(s.opts.RequestTimeout))
	release, err := proto.ReadFrameReserving(str, &req, proto.MaxRequestFrame, func(n int) (func(), error) {
		return s.reserve(rctx, cs, n)
	})
	rcancel()
	defer release()
	if errors.Is(err, errOverloaded) {
		log.Warn("refused a call", "err", err)
		str.CancelRead(proto.Code_OVERLOADED.StreamCode())
		str.CancelWrite(proto.Code_OVERLOADED.StreamCode())
		return
	}
	if err == nil {
		// One frame, then the end of the stream: anything more is a bad
		// frame too.
		var one [1]byte
		if n, rerr := str.Read(one[:]); n > 0 {
			err = errors.New("bytes after the request frame")
			err = errors.Join(proto.ErrBadFrame, err)
		} else if rerr != io.EOF {
			err = rerr
		}
	}
	if err != nil {
		if errors.Is(err, proto.ErrBadFrame) {
			s.m.refused.WithLabelValues("bad_frame").Inc()
			log.Warn("bad frame; resetting the stream", "err", err)
			str.CancelRead(proto.Code_BAD_FRAME.StreamCode())
			str.CancelWrite(proto.Code_BAD_FRAME.StreamCode())
			return
		}
		log.Debug("call abandoned before its request arrived", "err", err)
		str.CancelRead(proto.Code_CANCELLED.StreamCode())
		str.CancelWrite(proto.Code_CANCELLED.StreamCode())
		return
	}
	_ = str.SetReadDeadline(time.Time{})

	// The call's context ends when the worker gives up on it (resets the
	// stream or closes the connection) or the server shuts down.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(str.Context(), cancel)
	defer stop()

	name, resp, leased := s.serve(cctx, pin, &req, log)
	code := proto.Code_OK
	if resp.Error != nil {
		code = resp.Error.Code
	}
	_ = str.SetWriteDeadline(time.Now().Add(s.opts.RequestTimeout))
	err = proto.WriteFrame(str, resp, proto.MaxFrame)
	if err == nil {
		// The answer is out; a worker that already read it may have
		// stopped the stream, so closing can fail harmlessly.
		_ = str.Close()
	} else {
		str.CancelWrite(proto.Code_CANCELLED.StreamCode())
		if len(leased) > 0 {
			// The worker cannot have these leases: give them back.
			s.q.Unlease(leased[0].worker, refsOf(leased))
		}
		log.Debug("could not answer a call", "call", name, "err", err)
	}
	s.m.calls.WithLabelValues(name, code.String()).Inc()
	s.m.callSeconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
}

// errOverloaded marks a request refused for the bounds on reading.
var errOverloaded = errors.New("relay is over a bound on requests being read")

// reserve takes n bytes of the shared read budget for one request frame,
// and for a large one a slot of its connection's large calls. It refuses
// (counted) past a bound rather than buffer.
func (s *Server) reserve(ctx context.Context, cs *connState, n int) (func(), error) {
	large := n > largeFrame
	if large {
		if cs.large.Add(1) > int32(s.opts.MaxLargeCalls) {
			cs.large.Add(-1)
			s.m.refused.WithLabelValues("large_calls").Inc()
			return nil, fmt.Errorf("%w: %d large calls in flight on this connection", errOverloaded, s.opts.MaxLargeCalls)
		}
		s.m.largeCalls.Inc()
	}
	endLarge := func() {
		if large {
			cs.large.Add(-1)
			s.m.largeCalls.Dec()
		}
	}
	if err := s.budget.take(ctx, n); err != nil {
		endLarge()
		s.m.refused.WithLabelValues("read_budget").Inc()
		return nil, fmt.Errorf("%w: no room for a %d-byte request in %s: %w", errOverloaded, n, s.opts.RequestTimeout, err)
	}
	s.m.reading.Add(float64(n))
	return func() {
		s.budget.give(n)
		s.m.reading.Sub(float64(n))
		endLarge()
	}, nil
}

// leasedJob remembers a lease granted in a response, to undo it if the
// response cannot be written.
type leasedJob struct {
	worker string
	ref    queue.Ref
}

func refsOf(l []leasedJob) []queue.Ref {
	out := make([]queue.Ref, len(l))
	for i, j := range l {
		out[i] = j.ref
	}
	return out
}

// serve authorises and runs one request.
func (s *Server) serve(ctx context.Context, pin keys.Pin, req *proto.Request, log *slog.Logger) (name string, resp *proto.Response, leased []leasedJob) {
	name = callName(req)
	w, ok := s.opts.Workers().Lookup(pin)
	if !ok {
		s.m.refused.WithLabelValues("credentials_revoked").Inc()
		return name, errResponse(proto.Errorf(proto.Code_CREDENTIALS_REVOKED, "this key was removed from relay's workers file")), nil
	}
	if req.GetVersion() != proto.Version {
		s.m.refused.WithLabelValues("version").Inc()
		return name, errResponse(proto.Errorf(proto.Code_VERSION, "protocol version %d; relay speaks %d", req.GetVersion(), proto.Version)), nil
	}
	c := &call{s: s, ctx: ctx, worker: w, log: log}
	switch r := req.Call.(type) {
	case *proto.Request_Lease:
		resp, leased := c.lease(r.Lease)
		return name, resp, leased
	case *proto.Request_Heartbeat:
		return name, c.heartbeat(r.Heartbeat), nil
	case *proto.Request_Complete:
		return name, c.complete(r.Complete), nil
	case *proto.Request_Fail:
		return name, c.fail(r.Fail), nil
	case *proto.Request_CompleteBatch:
		return name, c.completeBatch(r.CompleteBatch), nil
	default:
		s.m.refused.WithLabelValues("invalid_argument").Inc()
		return name, errResponse(proto.Errorf(proto.Code_INVALID_ARGUMENT, "request names no call (lease, heartbeat, complete, complete_batch or fail)")), nil
	}
}

func callName(req *proto.Request) string {
	switch req.Call.(type) {
	case *proto.Request_Lease:
		return "lease"
	case *proto.Request_Heartbeat:
		return "heartbeat"
	case *proto.Request_Complete:
		return "complete"
	case *proto.Request_Fail:
		return "fail"
	case *proto.Request_CompleteBatch:
		return "complete_batch"
	}
	return "unknown"
}

func errResponse(e *proto.Error) *proto.Response { return &proto.Response{Error: e.ToWire()} }

// refuse counts and logs a call the worker may not make.
func (c *call) refuse(reason string, e *proto.Error) *proto.Response {
	c.s.m.refused.WithLabelValues(reason).Inc()
	c.log.Warn("refused a call", "reason", reason, "err", e.Message)
	return errResponse(e)
}

// authorize checks that the worker may take action a on job id's queue.
// A job of a queue the worker may do nothing on is answered as a job that
// does not exist, with the very same code and message, so that a worker
// cannot learn which queue a job id belongs to; the refusal is still
// counted and logged here. A worker allowed other actions on the queue is
// told which one it lacks: it knows that queue already.
func (c *call) authorize(id string, a auth.Action) *proto.Response {
	qn, err := c.s.q.QueueOf(c.ctx, id)
	if errors.Is(err, queue.ErrNotFound) {
		return noSuchJob(id)
	}
	if err != nil {
		return c.fromQueueError(err)
	}
	if !c.worker.May(qn, a) {
		e := proto.Errorf(proto.Code_UNAUTHORIZED, "worker %s may not %s jobs of queue %s", c.worker.Name, a, qn)
		if len(c.worker.Queues[qn]) == 0 {
			c.refuse("unauthorized_action", e)
			return noSuchJob(id)
		}
		return c.refuse("unauthorized_action", e)
	}
	return nil
}

// noSuchJob is the answer for a job id the worker may not know of.
func noSuchJob(id string) *proto.Response {
	return errResponse(proto.Errorf(proto.Code_NOT_FOUND, "getting job %s: %s", id, queue.ErrNotFound))
}

// fromQueueError maps the queue's errors to protocol codes.
func (c *call) fromQueueError(err error) *proto.Response {
	var code proto.Code
	var retry time.Duration
	switch {
	case errors.Is(err, queue.ErrLeaseLost):
		code = proto.Code_LEASE_LOST
	case errors.Is(err, queue.ErrNotFound):
		code = proto.Code_NOT_FOUND
	case errors.Is(err, queue.ErrInvalid):
		code = proto.Code_INVALID_ARGUMENT
		c.s.m.refused.WithLabelValues("invalid_argument").Inc()
	case errors.Is(err, queue.ErrOverloaded), errors.Is(err, queue.ErrTooManyLeases), errors.Is(err, queue.ErrFull):
		code, retry = proto.Code_OVERLOADED, time.Second
		c.s.m.refused.WithLabelValues("overloaded").Inc()
	case errors.Is(err, queue.ErrClosed), errors.Is(err, context.Canceled) && c.s.shuttingDown():
		code = proto.Code_SHUTTING_DOWN
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		code = proto.Code_CANCELLED
	case errors.Is(err, store.ErrFailed):
		code = proto.Code_INTERNAL
		c.log.Error("call failed: the store cannot commit", "err", err)
	default:
		code = proto.Code_INTERNAL
		c.log.Error("call failed", "err", err)
	}
	return &proto.Response{Error: &proto.ResponseError{Code: code, Message: err.Error(), RetryAfterMs: uint32(retry.Milliseconds())}}
}

func (s *Server) shuttingDown() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}
