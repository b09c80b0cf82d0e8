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
	var unknown map[int]bool // leases answered as lost without asking the queue
	for i, l := range r.GetLeases() {
		// A lease on a queue the worker may not heartbeat refuses the
		// whole call; an unknown job, or one of a queue the worker may
		// not see, reads as lost.
		resp := c.authorize(l.GetJobId(), auth.Heartbeat)
		switch resp.GetError().GetCode() {
		case proto.Code_UNAUTHORIZED:
			return resp
		case proto.Code_NOT_FOUND:
			if unknown == nil {
				unknown = map[int]bool{}
			}
			unknown[i] = true
			continue
		}
		refs = append(refs, refOf(l))
	}
	sts, err := c.s.q.Heartbeat(c.worker.Name, refs, r.GetAllHeld())
	if err != nil {
		return c.fromQueueError(err)
	}
	out := &proto.HeartbeatResponse{Statuses: make([]*proto.LeaseStatus, 0, len(r.GetLeases()))}
	for i, l := range r.GetLeases() {
		if unknown[i] {
			out.Statuses = append(out.Statuses, &proto.LeaseStatus{JobId: l.GetJobId(), State: proto.LeaseStatus_LOST})
			continue
		}
		st := sts[0]
		sts = sts[1:]
		ps := &proto.LeaseStatus{JobId: st.JobID, State: st.State.Wire()}
		if !st.Deadline.IsZero() {
			ps.DeadlineUnixMs = st.Deadline.UnixMilli()
		}
		out.Statuses = append(out.Statuses, ps)
	}
	return &proto.Response{Result: &proto.Response_Heartbeat{Heartbeat: out}}
}

func refOf(l *proto.LeaseRef) queue.Ref {
	return queue.Ref{JobID: l.GetJobId(), Attempt: l.GetAttempt(), Token: l.GetToken()}
}
