package queue

import (
	"context"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// RateWindow is the span Backend.Rates counts over.
const RateWindow = time.Minute

// Rate is what happened to one queue's jobs over the last RateWindow.
type Rate struct {
	Enqueued  int // jobs created (idempotent repeats not counted)
	Completed int // jobs that succeeded
	Failed    int // jobs that ended failed or dead
}

// IsZero reports whether nothing happened.
func (r Rate) IsZero() bool { return r == Rate{} }

// PerSecond is n jobs over RateWindow, per second.
func PerSecond(n int) float64 { return float64(n) / RateWindow.Seconds() }

// rateBuckets is the number of one-second buckets in RateWindow.
const rateBuckets = int(RateWindow / time.Second)

// rates is the embedded queue's rolling count of what its jobs did, one
// ring of one-second buckets per queue. It forgets at a restart: the
// window is short, and the counts are in memory only.
type rates struct {
	mu sync.Mutex
	by map[string]*rateRing
}

type rateRing struct {
	sec [rateBuckets]int64 // the Unix second each bucket counts
	n   [rateBuckets]Rate
}

// moved counts a job of queue going from one state to another at now:
// from "" is a new job, to succeeded, failed or dead the end of one.
func (r *rates) moved(queue string, from, to store.State, now time.Time) {
	var d Rate
	switch {
	case from == "":
		d.Enqueued = 1
	case to == store.Succeeded:
		d.Completed = 1
	case to == store.Failed || to == store.Dead:
		d.Failed = 1
	default:
		return
	}
	sec := now.Unix()
	i := int(sec % int64(rateBuckets))
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.by == nil {
		r.by = map[string]*rateRing{}
	}
	ring := r.by[queue]
	if ring == nil {
		ring = &rateRing{}
		r.by[queue] = ring
	}
	if ring.sec[i] != sec {
		ring.sec[i], ring.n[i] = sec, Rate{}
	}
	ring.n[i].Enqueued += d.Enqueued
	ring.n[i].Completed += d.Completed
	ring.n[i].Failed += d.Failed
}

// sum is each queue's counts over the RateWindow that ends at now; queues
// with nothing in it are left out, and forgotten once it is all past.
func (r *rates) sum(now time.Time) map[string]Rate {
	from, to := now.Unix()-int64(rateBuckets), now.Unix()
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]Rate{}
	for name, ring := range r.by {
		var t Rate
		stale := true
		for i, sec := range ring.sec {
			stale = stale && sec <= from
			if sec > from && sec <= to {
				t.Enqueued += ring.n[i].Enqueued
				t.Completed += ring.n[i].Completed
				t.Failed += ring.n[i].Failed
			}
		}
		if stale {
			delete(r.by, name)
		}
		if !t.IsZero() {
			out[name] = t
		}
	}
	return out
}

// IDFloor is the least job id made at t or later: every id made from t on
// sorts at or above it, so a range over ids from IDFloor(t) finds the jobs
// created since t without an index on the creation time.
func IDFloor(t time.Time) string {
	// One millisecond earlier with the random part full, the next id
	// carries into t's millisecond with the random part zero.
	ms := t.UnixMilli()
	g := idGen{lastMS: uint64(ms - 1)}
	for i := range g.rnd {
		g.rnd[i] = 0xff
	}
	return g.next(time.UnixMilli(ms - 1))
}

// Rates is what each queue's jobs did over the last RateWindow, as far as
// this process saw (it counts from when it opened).
func (q *Queue) Rates(ctx context.Context) (map[string]Rate, error) {
	return q.rate.sum(time.Now()), nil
}
