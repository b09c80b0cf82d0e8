package queue

import (
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// The window holds the last RateWindow of moves and forgets older ones,
// and a bucket reused a minute later starts from zero.
func TestRatesWindow(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	var r rates
	r.moved("a", "", store.Queued, t0)
	r.moved("a", store.Leased, store.Succeeded, t0.Add(500*time.Millisecond))
	r.moved("a", store.Leased, store.Dead, t0.Add(30*time.Second))
	r.moved("a", store.Leased, store.Retrying, t0.Add(30*time.Second)) // not an end
	r.moved("b", "", store.Queued, t0.Add(59*time.Second))
	for _, tc := range []struct {
		at   time.Duration
		want map[string]Rate
	}{
		{0, map[string]Rate{"a": {Enqueued: 1, Completed: 1}}},
		{59 * time.Second, map[string]Rate{"a": {Enqueued: 1, Completed: 1, Failed: 1}, "b": {Enqueued: 1}}},
		{60 * time.Second, map[string]Rate{"a": {Failed: 1}, "b": {Enqueued: 1}}},
		{2 * time.Minute, map[string]Rate{}},
	} {
		got := r.sum(t0.Add(tc.at))
		if len(got) != len(tc.want) {
			t.Fatalf("at +%s: %+v, want %+v", tc.at, got, tc.want)
		}
		for name, w := range tc.want {
			if got[name] != w {
				t.Fatalf("at +%s: %s = %+v, want %+v", tc.at, name, got[name], w)
			}
		}
	}
	// Bucket 0 again, a minute on: the old second's counts are gone.
	r.moved("a", "", store.Queued, t0.Add(2*time.Minute))
	if got := r.sum(t0.Add(2 * time.Minute)); got["a"] != (Rate{Enqueued: 1}) {
		t.Fatalf("after reuse: %+v", got)
	}
}

// IDFloor sorts above every id of the millisecond before and at or below
// every id of its own.
func TestIDFloor(t *testing.T) {
	var ids IDs
	at := time.UnixMilli(1_800_000_000_123)
	floor := IDFloor(at)
	for range 100 {
		if id := ids.Next(at.Add(-time.Millisecond)); id >= floor {
			t.Fatalf("id %s of the millisecond before >= floor %s", id, floor)
		}
	}
	var later IDs
	for range 100 {
		if id := later.Next(at); id < floor {
			t.Fatalf("id %s made at t < floor %s", id, floor)
		}
	}
}

// BenchmarkRatesMoved is the cost setState pays per job move.
func BenchmarkRatesMoved(b *testing.B) {
	var r rates
	now := time.Now()
	for i := 0; b.Loop(); i++ {
		r.moved("default", "", store.Queued, now.Add(time.Duration(i)*time.Microsecond))
	}
}
