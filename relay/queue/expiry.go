package queue

import (
	"container/heap"
	"fmt"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// idleWake is how often run looks at the timers when none is due sooner.
const idleWake = time.Second

// run fires timers (lease deadlines, jobs becoming ready) and prunes
// finished jobs past the retention, until Close.
func (q *Queue) run() {
	defer close(q.stopped)
	t := time.NewTimer(idleWake)
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
		q.shrink()
		wake := now.Add(idleWake)
		if !q.next.IsZero() && q.next.Before(wake) {
			wake = q.next
		}
		q.mu.Unlock()
		q.maybePrune(now)
		t.Reset(max(time.Until(wake), time.Millisecond))
	}
}

// fire handles every timer due by now: expired leases fail their attempt,
// held-back jobs become ready, and parked long polls get what is ready.
func (q *Queue) fire(now time.Time) {
	var expired []*entry
	var recs []store.Job
	readied := false
	nowNS := now.UnixNano()
	for q.timers.Len() > 0 && q.timers[0].at <= nowNS {
		t := heap.Pop(&q.timers).(timer)
		if t.slot >= q.arena.n {
			continue
		}
		e := q.arena.at(t.slot)
		if slot, ok := q.byID.get(e.id); !ok || slot != t.slot || e.timerAt != t.at {
			continue // stale: the job has a newer timer, or is gone
		}
		e.timerAt = 0
		switch e.State() {
		case store.Leased:
			if nowNS < e.deadline {
				q.pushTimer(e, e.deadline) // extended by heartbeats
				continue
			}
			recs = append(recs, q.expire(e, now))
			expired = append(expired, e)
		case store.Queued, store.Retrying:
			if nowNS < e.runAfter {
				q.pushTimer(e, e.runAfter)
				continue
			}
			q.makeReady(e)
			readied = true
		}
	}
	q.next = time.Time{}
	if q.timers.Len() > 0 {
		q.next = time.Unix(0, q.timers[0].at)
	}
	if len(expired) > 0 {
		q.write(recs, expired)
		q.log.Info("leases expired", "jobs", len(expired))
	}
	if readied || len(expired) > 0 {
		q.dispatch(now)
	}
}

// expire ends a lease whose deadline passed: a failed attempt. It returns
// the job's record to write.
func (q *Queue) expire(e *entry, now time.Time) store.Job {
	lastErr := fmt.Sprintf("lease expired: worker %s neither settled attempt %d nor heartbeat it by %s",
		q.names.name(e.worker), e.attempt, timeOf(e.deadline).UTC().Format(time.RFC3339Nano))
	e.end = leaseEndCode(store.EndExpired)
	q.m.expirations.WithLabelValues(q.names.name(e.queue)).Inc()
	q.failed(e, now, false, useBackoff, lastErr)
	rec := q.jobOf(e, now)
	rec.LastError = lastErr
	return rec
}

// shrink gives the index's memory back once no job is live: a drained
// backlog of a million leaves no 130 MiB behind.
func (q *Queue) shrink() {
	if q.live > 0 || q.arena.n == 0 {
		return
	}
	q.arena.reset()
	q.byID.reset()
	q.timers = nil // every timer left is stale
}
