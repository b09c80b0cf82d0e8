package server

import (
	"time"

	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

func (c *call) complete(r *proto.CompleteRequest) *proto.Response {
	l := r.GetLease()
	if l.GetJobId() == "" {
		return c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "lease.job_id: missing"))
	}
	if resp := c.authorize(l.GetJobId(), auth.Complete); resp != nil {
		return resp
	}
	dup, err := c.s.q.Complete(c.ctx, c.worker.Name, refOf(l), r.GetResult())
	if err != nil {
		return c.fromQueueError(err)
	}
	return &proto.Response{Result: &proto.Response_Complete{Complete: &proto.CompleteResponse{Duplicate: dup}}}
}

func (c *call) fail(r *proto.FailRequest) *proto.Response {
	l := r.GetLease()
	if l.GetJobId() == "" {
		return c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "lease.job_id: missing"))
	}
	if resp := c.authorize(l.GetJobId(), auth.Fail); resp != nil {
		return resp
	}
	res, err := c.s.q.Fail(c.ctx, c.worker.Name, refOf(l), r.GetError(), r.GetPermanent(), time.Duration(r.GetRetryAfterMs())*time.Millisecond)
	if err != nil {
		return c.fromQueueError(err)
	}
	out := &proto.FailResponse{State: string(res.State), Duplicate: res.Duplicate}
	if !res.NextAttempt.IsZero() {
		out.NextAttemptUnixMs = res.NextAttempt.UnixMilli()
	}
	return &proto.Response{Result: &proto.Response_Fail{Fail: out}}
}
