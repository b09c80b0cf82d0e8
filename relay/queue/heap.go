package queue

import (
	"container/heap"
	"time"
)

// readyHeap orders one queue's ready jobs: earliest RunAfter first, then
// the order they became ready.
type readyHeap []*entry

func (h readyHeap) Len() int { return len(h) }
func (h readyHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if !a.job.RunAfter.Equal(b.job.RunAfter) {
		return a.job.RunAfter.Before(b.job.RunAfter)
	}
	return a.seq < b.seq
}
func (h readyHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].heapIdx = i
	h[j].heapIdx = j
}
func (h *readyHeap) Push(x any) {
	e := x.(*entry)
	e.heapIdx = len(*h)
	*h = append(*h, e)
}
func (h *readyHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.heapIdx = -1
	return e
}

// before reports whether a should be leased before b.
func before(a, b *entry) bool {
	if !a.job.RunAfter.Equal(b.job.RunAfter) {
		return a.job.RunAfter.Before(b.job.RunAfter)
	}
	return a.seq < b.seq
}

// makeReady puts e in its queue's ready heap.
func (q *Queue) makeReady(e *entry) {
	if e.heapIdx >= 0 {
		return
	}
	h := q.ready[e.job.Queue]
	if h == nil {
		h = &readyHeap{}
		q.ready[e.job.Queue] = h
	}
	q.seq++
	e.seq = q.seq
	heap.Push(h, e)
	q.nready++
}

// removeReady takes e out of its ready heap, if it is in one.
func (q *Queue) removeReady(e *entry) {
	if e.heapIdx < 0 {
		return
	}
	h := q.ready[e.job.Queue]
	heap.Remove(h, e.heapIdx)
	q.nready--
	if h.Len() == 0 {
		delete(q.ready, e.job.Queue)
	}
}

// timer is one pending wake-up for a job: its lease deadline or the time
// it becomes ready. A job has at most one current timer (entry.timerAt);
// others in the heap are stale and skipped.
type timer struct {
	at time.Time
	e  *entry
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = timer{}
	*h = old[:len(old)-1]
	return t
}

// pushTimer arranges for e to be looked at, at or before at. A job with an
// earlier timer keeps it: when that fires, it is re-armed for the job's
// real due time.
func (q *Queue) pushTimer(e *entry, at time.Time) {
	if !e.timerAt.IsZero() && !at.Before(e.timerAt) {
		return
	}
	e.timerAt = at
	heap.Push(&q.timers, timer{at: at, e: e})
	if q.next.IsZero() || at.Before(q.next) {
		q.next = at
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}
