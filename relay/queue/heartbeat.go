package queue

import (
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// LeaseStatus is one lease after a heartbeat.
type LeaseStatus struct {
	JobID    string
	State    proto.LeaseState
	Deadline time.Time
}

// Heartbeat extends worker's leases in refs by each job's lease duration
// and reports each one's state, in order. Extensions are kept in memory
// only: after a restart every lease gets the restart grace anyway.
//
// With allHeld, refs is every lease the worker holds: its other leases
// older than Options.ReleaseGrace are released (a Lease answer that never
// arrived, a job the worker lost track of). A release counts as a failed
// attempt, so a job that kills its workers still ends dead, but it is
// ready again at once.
func (q *Queue) Heartbeat(worker string, refs []Ref, allHeld bool) ([]LeaseStatus, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, fmt.Errorf("heartbeat: %w", ErrClosed)
	}
	now := time.Now()
	out := make([]LeaseStatus, len(refs))
	for i, ref := range refs {
		out[i] = LeaseStatus{JobID: ref.JobID, State: proto.LeaseLost}
		e := q.jobs[ref.JobID]
		if e == nil || !holds(e, worker, ref) {
			q.m.fenced.WithLabelValues("heartbeat").Inc()
			continue
		}
		if d := now.Add(e.job.LeaseDuration); d.After(e.job.LeaseDeadline) {
			e.job.LeaseDeadline = d
		}
		out[i].Deadline = e.job.LeaseDeadline
		if e.job.CancelRequested {
			out[i].State = proto.LeaseCancelRequested
		} else {
			out[i].State = proto.LeaseHeld
		}
	}
	if allHeld {
		listed := make(map[string]bool, len(refs))
		for _, ref := range refs {
			listed[ref.JobID] = true
		}
		var released []*entry
		for id, e := range q.held[worker] {
			if listed[id] || now.Sub(e.job.LeasedAt) < q.opts.ReleaseGrace {
				continue
			}
			e.job.LastError = fmt.Sprintf("released: worker %s no longer holds the lease of attempt %d", worker, e.job.Attempt)
			e.job.LeaseEnd = store.EndReleased
			q.m.released.WithLabelValues(e.job.Queue).Inc()
			q.failed(e, now, false, 0)
			released = append(released, e)
		}
		if len(released) > 0 {
			q.write(released...)
			q.log.Info("leases released: the worker's heartbeat does not list them", "worker", worker, "jobs", len(released))
			q.dispatch(now)
		}
	}
	return out, nil
}
