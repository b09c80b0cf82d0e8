package server

import (
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Lease answers carry at most this many jobs and payload bytes, so the
// response frame stays under proto.MaxFrame.
const (
	maxJobsPerLease = 256
	maxLeaseBytes   = proto.MaxFrame / 2
)

func (c *call) lease(r *proto.LeaseRequest) (*proto.Response, []leasedJob) {
	queues := r.GetQueues()
	if len(queues) == 0 {
		queues = c.worker.QueuesFor(auth.Lease)
		if len(queues) == 0 {
			return c.refuse("unauthorized_queue", proto.Errorf(proto.Code_UNAUTHORIZED, "worker %s may lease from no queue", c.worker.Name)), nil
		}
	}
	for _, qn := range queues {
		if !c.worker.May(qn, auth.Lease) {
			return c.refuse("unauthorized_queue", proto.Errorf(proto.Code_UNAUTHORIZED,
				"worker %s may not lease from queue %q (it may lease from: %v)", c.worker.Name, qn, c.worker.QueuesFor(auth.Lease))), nil
		}
	}
	jobs, err := c.s.q.Lease(c.ctx, queue.LeaseRequest{
		Worker:   c.worker.Name,
		Queues:   queues,
		Max:      min(int(r.GetMaxJobs()), maxJobsPerLease),
		MaxBytes: maxLeaseBytes,
		Wait:     time.Duration(r.GetWaitMs()) * time.Millisecond,
	})
	if err != nil {
		if c.ctx.Err() != nil && len(jobs) == 0 && !c.s.shuttingDown() {
			// The worker gave up; nobody reads this answer.
			return errResponse(proto.Errorf(proto.Code_CANCELLED, "the worker cancelled the lease")), nil
		}
		return c.fromQueueError(err), nil
	}
	out := &proto.LeaseResponse{Jobs: make([]*proto.Job, len(jobs))}
	leased := make([]leasedJob, len(jobs))
	for i, j := range jobs {
		out.Jobs[i] = &proto.Job{
			Id:             j.ID,
			Queue:          j.Queue,
			Payload:        j.Payload,
			Lease:          &proto.LeaseRef{JobId: j.ID, Attempt: j.Attempt, Token: j.LeaseToken},
			MaxAttempts:    j.MaxAttempts,
			LeaseMs:        uint32(j.LeaseDuration.Milliseconds()),
			DeadlineUnixMs: j.LeaseDeadline.UnixMilli(),
			CreatedUnixMs:  j.CreatedAt.UnixMilli(),
		}
		leased[i] = leasedJob{worker: c.worker.Name, ref: queue.Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}}
	}
	return &proto.Response{Result: &proto.Response_Lease{Lease: out}}, slices.Clip(leased)
}
