package store

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
)

func openTest(t *testing.T, path string) *Bolt {
	t.Helper()
	s, err := OpenBolt(BoltOptions{Path: path, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func job(id, queue string, st State) Job {
	now := time.Now().UTC()
	return Job{ID: id, Queue: queue, State: st, Payload: []byte("p-" + id), MaxAttempts: 3, CreatedAt: now, UpdatedAt: now, RunAfter: now}
}

func mustWrite(t *testing.T, s Store, jobs ...Job) {
	t.Helper()
	if err := s.Write(jobs...).Wait(context.Background()); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func TestWriteGetAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	j := job("01A", "default", Queued)
	j.IdempotencyKey = "k1"
	mustWrite(t, s, j)
	j.State = Leased
	j.Attempt = 1
	j.LeaseToken = []byte{1, 2, 3}
	mustWrite(t, s, j)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	got, err := s.Get(context.Background(), "01A")
	if err != nil {
		t.Fatal(err)
	}
	if got.State != Leased || got.Attempt != 1 || string(got.Payload) != "p-01A" || string(got.LeaseToken) != "\x01\x02\x03" {
		t.Fatalf("after reopen: %+v", got)
	}
	if id, ok, err := s.LookupKey(context.Background(), "default", "k1"); err != nil || !ok || id != "01A" {
		t.Fatalf("LookupKey = %q %v %v", id, ok, err)
	}
	if _, ok, _ := s.LookupKey(context.Background(), "other", "k1"); ok {
		t.Fatal("idempotency keys must be per queue")
	}
	if _, err := s.Get(context.Background(), "nope"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get(nope) = %v, want ErrNotFound", err)
	}
	counts, err := s.Counts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[QueueState]int{{"default", Leased}: 1}
	if fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counts = %v, want %v", counts, want)
	}
}

// Writes are applied in the order they are handed over, even when many
// goroutines write and commits are grouped.
func TestWritesKeepOrder(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "relay.db"))
	const jobs, steps = 50, 20
	var commits []*Commit
	for step := 0; step < steps; step++ {
		for i := 0; i < jobs; i++ {
			j := job(fmt.Sprintf("J%03d", i), "q", Queued)
			j.Attempt = uint32(step)
			if step%2 == 1 {
				j.State = Leased
			}
			commits = append(commits, s.Write(j))
		}
	}
	for _, c := range commits {
		if err := c.Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < jobs; i++ {
		j, err := s.Get(context.Background(), fmt.Sprintf("J%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		if j.Attempt != steps-1 || j.State != Leased {
			t.Fatalf("job %d: attempt %d state %s; want the last write (attempt %d, leased)", i, j.Attempt, j.State, steps-1)
		}
	}
	counts, _ := s.Counts(context.Background())
	if counts[QueueState{"q", Leased}] != jobs || len(counts) != 1 {
		t.Fatalf("counts = %v", counts)
	}
}

// Many concurrent writers share commits, and every acknowledged write is
// there.
func TestGroupCommit(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "relay.db"))
	var wg sync.WaitGroup
	const writers, each = 16, 25
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				mustWrite(t, s, job(fmt.Sprintf("W%02d-%03d", w, i), "q", Queued))
			}
		}()
	}
	wg.Wait()
	n := 0
	if err := s.Live(context.Background(), func(Job) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != writers*each {
		t.Fatalf("%d live jobs, want %d", n, writers*each)
	}
}

func TestList(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "relay.db"))
	var all []Job
	for i := 0; i < 25; i++ {
		q := []string{"a", "b"}[i%2]
		st := []State{Queued, Succeeded, Dead}[i%3]
		all = append(all, job(fmt.Sprintf("L%03d", i), q, st))
	}
	mustWrite(t, s, all...)
	tests := []struct {
		name  string
		f     Filter
		want  int
		first string
	}{
		{"all", Filter{}, 25, "L000"},
		{"queue", Filter{Queue: "a"}, 13, "L000"},
		{"state", Filter{State: Dead}, 8, "L002"},
		{"both", Filter{Queue: "b", State: Succeeded}, 4, "L001"},
		{"none", Filter{Queue: "c"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []Job
			f := tt.f
			f.Limit = 3
			for pages := 0; pages < 20; pages++ {
				page, next, err := s.List(context.Background(), f)
				if err != nil {
					t.Fatal(err)
				}
				if len(page) > 3 {
					t.Fatalf("page of %d, limit 3", len(page))
				}
				got = append(got, page...)
				if next == "" {
					break
				}
				f.After = next
			}
			if len(got) != tt.want {
				t.Fatalf("%d jobs, want %d", len(got), tt.want)
			}
			for i, j := range got {
				if tt.f.Queue != "" && j.Queue != tt.f.Queue || tt.f.State != "" && j.State != tt.f.State {
					t.Fatalf("job %s (%s, %s) does not match %+v", j.ID, j.Queue, j.State, tt.f)
				}
				if i > 0 && got[i-1].ID >= j.ID {
					t.Fatalf("not in id order: %s then %s", got[i-1].ID, j.ID)
				}
			}
			if tt.want > 0 && got[0].ID != tt.first {
				t.Fatalf("first %s, want %s", got[0].ID, tt.first)
			}
		})
	}
}

func TestOpenRefusesLockedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	openTest(t, path)
	_, err := OpenBolt(BoltOptions{Path: path, LockTimeout: 100 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "another process holds its lock") {
		t.Fatalf("second open: %v", err)
	}
}

func TestOpenRefusesOtherSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte(bucketMeta))
		if err != nil {
			return err
		}
		return b.Put([]byte("schema"), []byte("99"))
	})
	_ = db.Close()
	if err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(BoltOptions{Path: path})
	if err == nil || !strings.Contains(err.Error(), `schema version "99"`) {
		t.Fatalf("open: %v", err)
	}
}

func TestWriteAfterCloseFails(t *testing.T) {
	s, err := OpenBolt(BoltOptions{Path: filepath.Join(t.TempDir(), "relay.db")})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(job("X", "q", Queued)).Err(); !errors.Is(err, ErrClosed) {
		t.Fatalf("write after close: %v", err)
	}
}

func TestInvalidRecordFailsTheStore(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "relay.db"))
	if err := s.Write(Job{ID: "X", Queue: "q", State: "bogus"}).Err(); !errors.Is(err, ErrFailed) {
		t.Fatalf("write of a bad record: %v, want ErrFailed", err)
	}
	if s.Err() == nil {
		t.Fatal("store should report its failure")
	}
	if err := s.Write(job("Y", "q", Queued)).Err(); !errors.Is(err, ErrFailed) {
		t.Fatalf("write after failure: %v, want ErrFailed", err)
	}
}
