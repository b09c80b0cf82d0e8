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
	sk, hasSession, refused := c.leaseSession(r)
	if refused != nil {
		return refused, nil
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
	if hasSession && len(leased) > 0 {
		if refs := refsOf(leased); c.s.sessions.answered(sk, r.GetSeq(), refs) {
			// The worker made a later call of this session: it gave this
			// one up and will not read the answer.
			c.s.q.Unlease(c.worker.Name, refs)
			return errResponse(proto.Errorf(proto.Code_CANCELLED, "the worker made a later lease call of this session")), nil
		}
	}
	return &proto.Response{Result: &proto.Response_Lease{Lease: out}}, slices.Clip(leased)
}

// leaseSession checks the call's session (proto.LeaseRequest) and undoes
// the leases of the session's last answer when the worker says it never
// read it.
func (c *call) leaseSession(r *proto.LeaseRequest) (k sessionKey, ok bool, refused *proto.Response) {
	id := r.GetSession()
	if len(id) == 0 {
		return k, false, nil
	}
	if len(id) != sessionIDLen {
		return k, false, c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "session: %d bytes; want %d", len(id), sessionIDLen))
	}
	k.worker = c.worker.Name
	copy(k.id[:], id)
	undo, evicted, err := c.s.sessions.begin(k, r.GetSeq(), r.GetReceived(), time.Now())
	if err != nil {
		return k, false, c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "seq %d: %v", r.GetSeq(), err))
	}
	if evicted > 0 {
		c.s.m.sessionsEvicted.Add(float64(evicted))
	}
	if len(undo) > 0 {
		c.s.m.answersLost.Add(float64(len(undo)))
		c.log.Info("the worker never read a lease answer (lost with its connection); undoing those leases", "jobs", len(undo), "seq", r.GetSeq(), "received", r.GetReceived())
		c.s.q.Unlease(c.worker.Name, undo)
	}
	return k, true, nil
}
