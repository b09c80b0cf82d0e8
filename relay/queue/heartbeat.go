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
	nowNS := now.UnixNano()
	for i, ref := range refs {
		out[i] = LeaseStatus{JobID: ref.JobID, State: proto.LeaseLost}
		e := q.find(ref.JobID)
		if e == nil || !q.holds(e, worker, ref) {
			q.m.fenced.WithLabelValues("heartbeat").Inc()
			continue
		}
		if d := now.Add(e.leaseDur).UnixNano(); d > e.deadline {
			e.deadline = d
		}
		out[i].Deadline = timeOf(e.deadline)
		if e.cancel {
			out[i].State = proto.LeaseCancelRequested
		} else {
			out[i].State = proto.LeaseHeld
		}
	}
	wi, known := q.names.lookup(worker)
	if allHeld && known {
		listed := make(map[[16]byte]bool, len(refs))
		for _, ref := range refs {
			if id, ok := parseID(ref.JobID); ok {
				listed[id] = true
			}
		}
		var released []*entry
		var recs []store.Job
		for slot := range q.held[wi] {
			e := q.arena.at(slot)
			if listed[e.id] || time.Duration(nowNS-e.leasedAt) < q.opts.ReleaseGrace {
				continue
			}
			lastErr := fmt.Sprintf("released: worker %s no longer holds the lease of attempt %d", worker, e.attempt)
			e.end = leaseEndCode(store.EndReleased)
			q.m.released.WithLabelValues(q.names.name(e.queue)).Inc()
			q.failed(e, now, false, 0, lastErr)
			rec := q.jobOf(e, now)
			rec.LastError = lastErr
			released = append(released, e)
			recs = append(recs, rec)
		}
		if len(released) > 0 {
			q.write(recs, released)
			q.log.Info("leases released: the worker's heartbeat does not list them", "worker", worker, "jobs", len(released))
			q.dispatch(now)
		}
	}
	return out, nil
}
