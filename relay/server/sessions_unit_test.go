package server

import (
	"fmt"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
)

// The session rules, step by step: which answers are undone, and when.
func TestLeaseSessionSteps(t *testing.T) {
	ref := func(id string) []queue.Ref { return []queue.Ref{{JobID: id, Attempt: 1}} }
	type step struct {
		answer         bool // answered(seq, refs) instead of begin
		seq, received  uint64
		refs           []queue.Ref
		wantUndo       []queue.Ref
		wantStale, err bool
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"read answers are kept", []step{
			{seq: 1}, {answer: true, seq: 1, refs: ref("a")},
			{seq: 2, received: 1}, {answer: true, seq: 2, refs: ref("b")},
			{seq: 3, received: 2},
		}},
		{"an unread answer is undone once", []step{
			{seq: 1}, {answer: true, seq: 1, refs: ref("a")},
			{seq: 2, received: 0, wantUndo: ref("a")},
			{seq: 3, received: 0},
		}},
		{"only the last answer with jobs is pending", []step{
			{seq: 1}, {answer: true, seq: 1, refs: ref("a")},
			{seq: 2, received: 1},
			{seq: 3, received: 1, wantUndo: nil},
		}},
		{"an answer after a later call is stale", []step{
			{seq: 1},
			{seq: 2, received: 0},
			{answer: true, seq: 1, refs: ref("a"), wantStale: true},
			{answer: true, seq: 2, refs: ref("b")},
			{seq: 3, received: 1, wantUndo: ref("b")},
		}},
		{"seq must grow", []step{
			{seq: 0, err: true},
			{seq: 4}, {seq: 4, err: true}, {seq: 3, err: true}, {seq: 5},
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ls := newLeaseSessions()
			k := sessionKey{worker: "bunny", id: [16]byte{1}}
			now := time.Unix(1000, 0)
			for i, s := range tc.steps {
				if s.answer {
					if stale := ls.answered(k, s.seq, s.refs); stale != s.wantStale {
						t.Fatalf("step %d: answered(%d) stale = %v, want %v", i, s.seq, stale, s.wantStale)
					}
					continue
				}
				undo, _, err := ls.begin(k, s.seq, s.received, now)
				if (err != nil) != s.err {
					t.Fatalf("step %d: begin(%d, %d): %v, want error %v", i, s.seq, s.received, err, s.err)
				}
				if fmt.Sprint(undo) != fmt.Sprint(s.wantUndo) {
					t.Fatalf("step %d: begin(%d, %d) undoes %v, want %v", i, s.seq, s.received, undo, s.wantUndo)
				}
			}
		})
	}
}

// One worker name holds at most maxSessionsPerWorker sessions; the least
// recently used goes first, and idle ones are swept.
func TestLeaseSessionBounds(t *testing.T) {
	ls := newLeaseSessions()
	now := time.Unix(1000, 0)
	key := func(w string, i int) sessionKey { return sessionKey{worker: w, id: [16]byte{byte(i), byte(i >> 8)}} }
	for i := range maxSessionsPerWorker {
		if _, ev, err := ls.begin(key("bunny", i), 1, 0, now.Add(time.Duration(i)*time.Millisecond)); err != nil || ev != 0 {
			t.Fatalf("session %d: evicted %d, %v", i, ev, err)
		}
	}
	if _, _, err := ls.begin(key("other", 0), 1, 0, now); err != nil {
		t.Fatal(err)
	}
	_, ev, err := ls.begin(key("bunny", 1000), 1, 0, now.Add(time.Second))
	if err != nil || ev != 1 {
		t.Fatalf("one session past the bound: evicted %d, %v; want 1", ev, err)
	}
	if _, ok := ls.m[key("bunny", 0)]; ok {
		t.Error("the least recently used session was kept")
	}
	if _, ok := ls.m[key("other", 0)]; !ok {
		t.Error("another worker's session was evicted")
	}
	if n := ls.perWorker["bunny"]; n != maxSessionsPerWorker {
		t.Errorf("bunny holds %d sessions, want %d", n, maxSessionsPerWorker)
	}
	// Past the idle time every old session is swept to make room.
	_, ev, err = ls.begin(key("bunny", 2000), 1, 0, now.Add(sessionIdle+time.Hour))
	if err != nil || ev != 0 {
		t.Fatalf("after the idle time: evicted %d, %v; want the idle ones swept, none evicted", ev, err)
	}
	if len(ls.m) != 1 || ls.perWorker["bunny"] != 1 || ls.perWorker["other"] != 0 {
		t.Errorf("after the sweep: %d sessions, per worker %v; want only the new one", len(ls.m), ls.perWorker)
	}
}
