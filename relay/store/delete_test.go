package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// Delete takes a record out of every index, its count and its
// idempotency key, in order with the writes handed over before it.
func TestDelete(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "relay.db"))
	a, b := job("01A", "default", Queued), job("01B", "default", Succeeded)
	a.IdempotencyKey = "k"
	mustWrite(t, s, a, b)
	a.State = Cancelled
	// The finishing write and the delete go together, unwaited: the
	// delete must not be undone by the write before it.
	s.Write(a)
	if err := s.Delete(a.ID, "01NONE").Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, a.ID); !errors.Is(err, ErrNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
	if _, ok, err := s.LookupKey(ctx, "default", "k"); err != nil || ok {
		t.Fatalf("the deleted job's key is still taken: %v %v", ok, err)
	}
	counts, err := s.Counts(ctx)
	if err != nil || len(counts) != 1 || counts[QueueState{"default", Succeeded}] != 1 {
		t.Fatalf("counts after delete: %v %v", counts, err)
	}
	for _, f := range []Filter{{}, {Queue: "default"}, {State: Cancelled}, {Queue: "default", State: Cancelled}} {
		jobs, _, err := s.List(ctx, f)
		if err != nil || (f.State == "" && (len(jobs) != 1 || jobs[0].ID != b.ID)) || (f.State != "" && len(jobs) != 0) {
			t.Fatalf("list %+v after delete: %+v %v", f, jobs, err)
		}
	}
}

// A pause is kept in the file.
func TestPausedReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	for _, q := range []string{"b", "a", "c"} {
		if err := s.SetPaused(ctx, q, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.SetPaused(ctx, "c", false); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	if got, err := s.Paused(ctx); err != nil || len(got) != 2 || got[0] != "a" || got[1] != "b" {
		t.Fatalf("paused after reopen: %v %v; want [a b]", got, err)
	}
}
