package queue

import (
	"container/heap"
	"fmt"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// sweepEvery is how often finished jobs whose records are durable are
// dropped from memory when no timer is due sooner.
const sweepEvery = time.Second

// run fires timers (lease deadlines, jobs becoming ready) and sweeps
// finished jobs, until Close.
func (q *Queue) run() {
	defer close(q.stopped)
	t := time.NewTimer(sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-q.closing:
			q.mu.Lock()
			for _, w := range slices.Clone(q.waiters) {
				q.unpark(w)
			}
			q.mu.Unlock()
			return
		case <-t.C:
		case <-q.kick:
		}
		q.mu.Lock()
		now := time.Now()
		q.fire(now)
		q.sweep()
		wake := now.Add(sweepEvery)
		if !q.next.IsZero() && q.next.Before(wake) {
			wake = q.next
		}
		q.mu.Unlock()
		t.Reset(max(time.Until(wake), time.Millisecond))
	}
}

// fire handles every timer due by now: expired leases fail their attempt,
// held-back jobs become ready, and parked long polls get what is ready.
func (q *Queue) fire(now time.Time) {
	var expired []*entry
	readied := false
	for q.timers.Len() > 0 && !q.timers[0].at.After(now) {
		t := heap.Pop(&q.timers).(timer)
		e := t.e
		if !e.timerAt.Equal(t.at) || q.jobs[e.job.ID] != e {
			continue // stale: the job has a newer timer, or is gone
		}
		e.timerAt = time.Time{}
		switch e.job.State {
		case store.Leased:
			if now.Before(e.job.LeaseDeadline) {
				q.pushTimer(e, e.job.LeaseDeadline) // extended by heartbeats
				continue
			}
			q.expire(e, now)
			expired = append(expired, e)
		case store.Queued, store.Retrying:
			if now.Before(e.job.RunAfter) {
				q.pushTimer(e, e.job.RunAfter)
				continue
			}
			q.makeReady(e)
			readied = true
		}
	}
	q.next = time.Time{}
	if q.timers.Len() > 0 {
		q.next = q.timers[0].at
	}
	if len(expired) > 0 {
		q.write(expired...)
		q.log.Info("leases expired", "jobs", len(expired))
	}
	if readied || len(expired) > 0 {
		q.dispatch(now)
	}
}

// expire ends a lease whose deadline passed: a failed attempt.
func (q *Queue) expire(e *entry, now time.Time) {
	j := &e.job
	j.LastError = fmt.Sprintf("lease expired: worker %s neither settled attempt %d nor heartbeat it by %s",
		j.LeasedBy, j.Attempt, j.LeaseDeadline.UTC().Format(time.RFC3339Nano))
	j.LeaseEnd = store.EndExpired
	q.m.expirations.WithLabelValues(j.Queue).Inc()
	q.failed(e, now, false, useBackoff)
}
