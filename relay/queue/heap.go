package queue

import (
	"container/heap"
	"time"
)

// readyHeap orders one queue's ready jobs: earliest RunAfter first, then
// the order they became ready. It holds arena slots.
type readyHeap struct {
	a     *arena
	slots []uint32
}

func (h *readyHeap) Len() int { return len(h.slots) }
func (h *readyHeap) Less(i, j int) bool {
	return before(h.a.at(h.slots[i]), h.a.at(h.slots[j]))
}
func (h *readyHeap) Swap(i, j int) {
	h.slots[i], h.slots[j] = h.slots[j], h.slots[i]
	h.a.at(h.slots[i]).heapIdx = int32(i)
	h.a.at(h.slots[j]).heapIdx = int32(j)
}
func (h *readyHeap) Push(x any) {
	slot := x.(uint32)
	h.a.at(slot).heapIdx = int32(len(h.slots))
	h.slots = append(h.slots, slot)
}
func (h *readyHeap) Pop() any {
	n := len(h.slots) - 1
	slot := h.slots[n]
	h.slots = h.slots[:n]
	h.a.at(slot).heapIdx = -1
	return slot
}

// top is the job leased next from this queue.
func (h *readyHeap) top() *entry { return h.a.at(h.slots[0]) }

// before reports whether a should be leased before b.
func before(a, b *entry) bool {
	if a.runAfter != b.runAfter {
		return a.runAfter < b.runAfter
	}
	return a.seq < b.seq
}

// makeReady puts e in its queue's ready heap.
func (q *Queue) makeReady(e *entry) {
	if e.heapIdx >= 0 {
		return
	}
	h := q.ready[e.queue]
	if h == nil {
		h = &readyHeap{a: &q.arena}
		q.ready[e.queue] = h
	}
	q.seq++
	e.seq = q.seq
	heap.Push(h, e.slot)
	q.nready++
}

// removeReady takes e out of its ready heap, if it is in one.
func (q *Queue) removeReady(e *entry) {
	if e.heapIdx < 0 || e.slot == noSlot {
		return
	}
	h := q.ready[e.queue]
	heap.Remove(h, int(e.heapIdx))
	q.nready--
	if h.Len() == 0 {
		delete(q.ready, e.queue)
	}
}

// timer is one pending wake-up for a job: its lease deadline or the time
// it becomes ready. A job has at most one current timer (entry.timerAt);
// others in the heap are stale and skipped.
type timer struct {
	at   int64 // Unix nanoseconds
	slot uint32
}

type timerHeap []timer

func (h timerHeap) Len() int           { return len(h) }
func (h timerHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h timerHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *timerHeap) Push(x any)        { *h = append(*h, x.(timer)) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	*h = old[:len(old)-1]
	return t
}

// pushTimer arranges for e to be looked at, at or before at. A job with an
// earlier timer keeps it: when that fires, it is re-armed for the job's
// real due time.
func (q *Queue) pushTimer(e *entry, at int64) {
	if e.timerAt != 0 && at >= e.timerAt {
		return
	}
	e.timerAt = at
	heap.Push(&q.timers, timer{at: at, slot: e.slot})
	if t := time.Unix(0, at); q.next.IsZero() || t.Before(q.next) {
		q.next = t
		select {
		case q.kick <- struct{}{}:
		default:
		}
	}
}
