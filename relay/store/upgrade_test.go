package store

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeV1 makes a file of schema version 1 as relay wrote it: one JSON
// record per job, a states bucket, the same indexes and counts.
func writeV1(t *testing.T, path string, jobs ...Job) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range []string{bucketMeta, bucketJobs, "states", bucketByQS, bucketByQ, "by_s", bucketKeys, bucketCounts, bucketPaused} {
			if _, err := tx.CreateBucket([]byte(b)); err != nil {
				return err
			}
		}
		if err := tx.Bucket([]byte(bucketMeta)).Put([]byte("schema"), []byte("1")); err != nil {
			return err
		}
		for _, j := range jobs {
			rec, err := json.Marshal(j)
			if err != nil {
				return err
			}
			for _, kv := range []struct {
				b    string
				k, v []byte
			}{
				{bucketJobs, []byte(j.ID), rec},
				{"states", []byte(j.ID), []byte(j.State)},
				{bucketByQS, key(j.Queue, string(j.State), j.ID), nil},
				{bucketByQ, key(j.Queue, j.ID), nil},
				{"by_s", key(string(j.State), j.ID), nil},
			} {
				if err := tx.Bucket([]byte(kv.b)).Put(kv.k, kv.v); err != nil {
					return err
				}
			}
			if j.IdempotencyKey != "" {
				if err := tx.Bucket([]byte(bucketKeys)).Put(key(j.Queue, j.IdempotencyKey), []byte(j.ID)); err != nil {
					return err
				}
			}
			if err := addCount(tx.Bucket([]byte(bucketCounts)), key(j.Queue, string(j.State)), 1); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A schema-1 file is rewritten at open: every job reads back whole, the
// live ones load, finished ones are in the retention index, and the file
// says version 2.
func TestUpgradeV1(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	live := job("01LIVE", "default", Leased)
	live.Attempt, live.LeaseToken, live.LeasedBy, live.LastError = 2, []byte("0123456789abcdef"), "w1", "boom"
	live.IdempotencyKey = "k"
	done := job("01DONE", "default", Succeeded)
	done.Result, done.FinishedAt = []byte("ok"), time.Now().Add(-time.Hour)
	var many []Job
	for i := range upgradeBatch + 5 { // more than one upgrade transaction
		many = append(many, job("01M"+string(rune('A'+i/26/26%26))+string(rune('A'+i/26%26))+string(rune('A'+i%26)), "bulk", Queued))
	}
	writeV1(t, path, append([]Job{live, done}, many...)...)

	s := openTest(t, path)
	got, err := s.Get(ctx, live.ID)
	if err != nil || got.State != Leased || got.Attempt != 2 || string(got.LeaseToken) != "0123456789abcdef" || got.LeasedBy != "w1" ||
		got.LastError != "boom" || string(got.Payload) != "p-01LIVE" || got.IdempotencyKey != "k" {
		t.Fatalf("live job after upgrade: %+v %v", got, err)
	}
	if got, err := s.Get(ctx, done.ID); err != nil || string(got.Result) != "ok" || string(got.Payload) != "p-01DONE" {
		t.Fatalf("finished job after upgrade: %+v %v", got, err)
	}
	if id, ok, err := s.LookupKey(ctx, "default", "k"); err != nil || !ok || id != live.ID {
		t.Fatalf("key after upgrade: %q %v %v", id, ok, err)
	}
	n := 0
	if err := s.Live(ctx, func(j Job) error {
		n++
		if j.ID == live.ID && (j.PayloadSize != len("p-01LIVE") || j.LeasedBy != "w1") {
			t.Errorf("live record %+v", j)
		}
		return nil
	}); err != nil || n != 1+len(many) {
		t.Fatalf("Live after upgrade: %d jobs, %v; want %d", n, err, 1+len(many))
	}
	if ids, err := s.Finished(ctx, time.Now(), 10); err != nil || len(ids) != 1 || ids[0] != done.ID {
		t.Fatalf("Finished after upgrade: %v %v", ids, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkUpgraded(t, path)
}

// checkUpgraded fails t unless the closed file at path says the current
// schema version and holds no bucket of an earlier one.
func checkUpgraded(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bucketMeta)).Get([]byte("schema")); string(v) != schemaVersion {
			t.Errorf("schema after upgrade %q", v)
		}
		for _, b := range []string{"states", "by_s"} {
			if tx.Bucket([]byte(b)) != nil {
				t.Errorf("the %s bucket of an earlier schema is still there", b)
			}
		}
		return nil
	})
}

// A schema-2 file loses its index by state at open, and says version 3;
// its jobs read, load and list by state as before.
func TestUpgradeV2(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	jobs := []Job{job("01A", "a", Queued), job("01B", "b", Leased), job("01C", "a", Dead), job("01D", "b", Queued)}
	mustWrite(t, s, jobs...)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error { // what version 2 kept
		b, err := tx.CreateBucket([]byte("by_s"))
		if err != nil {
			return err
		}
		for _, j := range jobs {
			if err := b.Put(key(string(j.State), j.ID), nil); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bucketMeta)).Put([]byte("schema"), []byte("2"))
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	var live []string
	if err := s.Live(ctx, func(j Job) error { live = append(live, j.ID); return nil }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"01A", "01D", "01B"}; !slices.Equal(live, want) { // by state, then queue, then id
		t.Fatalf("Live after upgrade: %v, want %v", live, want)
	}
	queued, _, err := s.List(ctx, Filter{State: Queued})
	if err != nil || len(queued) != 2 || queued[0].ID != "01A" || queued[1].ID != "01D" {
		t.Fatalf("List of queued jobs after upgrade: %+v %v", queued, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkUpgraded(t, path)
}

// A record is seen from the moment it is handed over; a later record
// keeps the first one's body and, when it carries none, the last error.
func TestReadYourWrites(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "relay.db"))
	j := job("01RYW", "default", Queued)
	j.IdempotencyKey = "k"
	s.Write(j)
	if got, err := s.Get(ctx, j.ID); err != nil || string(got.Payload) != "p-01RYW" {
		t.Fatalf("Get right after Write: %+v %v", got, err)
	}
	if id, ok, _ := s.LookupKey(ctx, "default", "k"); !ok || id != j.ID {
		t.Fatalf("LookupKey right after Write: %q %v", id, ok)
	}
	upd := Job{ID: j.ID, Queue: "default", State: Retrying, Attempt: 1, LastError: "first"}
	s.Write(upd)
	upd.State, upd.Attempt, upd.LastError = Leased, 2, ""
	c := s.Write(upd)
	for i, when := range []string{"before the commit", "after it"} {
		if i == 1 {
			if err := c.Err(); err != nil {
				t.Fatal(err)
			}
		}
		got, err := s.Get(ctx, j.ID)
		if err != nil || got.State != Leased || got.Attempt != 2 || got.LastError != "first" || string(got.Payload) != "p-01RYW" || got.IdempotencyKey != "k" {
			t.Fatalf("%s: %+v %v", when, got, err)
		}
	}
	bodies, found, err := s.Bodies(ctx, []string{j.ID, "01NONE"})
	if err != nil || !found[0] || found[1] || string(bodies[0].Payload) != "p-01RYW" || bodies[0].CreatedAt.IsZero() {
		t.Fatalf("Bodies: %+v %v %v", bodies, found, err)
	}
	s.Delete(j.ID)
	if _, err := s.Get(ctx, j.ID); err == nil {
		t.Fatal("Get right after Delete found the job")
	}
}
