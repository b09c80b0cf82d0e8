package server

import (
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// maxHeartbeatLeases bounds one heartbeat's list.
const maxHeartbeatLeases = 4096

func (c *call) heartbeat(r *proto.HeartbeatRequest) *proto.Response {
	if len(r.GetLeases()) > maxHeartbeatLeases {
		return c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "leases: %d; at most %d in one heartbeat", len(r.GetLeases()), maxHeartbeatLeases))
	}
	refs := make([]queue.Ref, 0, len(r.GetLeases()))
	for _, l := range r.GetLeases() {
		// A lease on a queue the worker may not heartbeat refuses the
		// whole call; an unknown job just reads as lost below.
		if resp := c.authorize(l.GetJobId(), auth.Heartbeat); resp != nil && resp.Error.GetCode() == proto.Code_UNAUTHORIZED {
			return resp
		}
		refs = append(refs, refOf(l))
	}
	sts, err := c.s.q.Heartbeat(c.worker.Name, refs, r.GetAllHeld())
	if err != nil {
		return c.fromQueueError(err)
	}
	out := &proto.HeartbeatResponse{Statuses: make([]*proto.LeaseStatus, len(sts))}
	for i, st := range sts {
		ps := &proto.LeaseStatus{JobId: st.JobID, State: st.State.Wire()}
		if !st.Deadline.IsZero() {
			ps.DeadlineUnixMs = st.Deadline.UnixMilli()
		}
		out.Statuses[i] = ps
	}
	return &proto.Response{Result: &proto.Response_Heartbeat{Heartbeat: out}}
}

func refOf(l *proto.LeaseRef) queue.Ref {
	return queue.Ref{JobID: l.GetJobId(), Attempt: l.GetAttempt(), Token: l.GetToken()}
}
