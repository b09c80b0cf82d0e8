package store

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// writeSegment writes frames as journal segment seg beside path, the way
// the committer appends them, and returns the segment's bytes.
func writeSegment(t *testing.T, path string, seg uint64, frames ...[]writeReq) []byte {
	t.Helper()
	var b []byte
	for _, f := range frames {
		b = appendFrame(b, f)
	}
	if err := os.WriteFile(segmentPath(path, seg), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return b
}

func writes(jobs ...Job) []writeReq {
	var w []writeReq
	for _, j := range jobs {
		w = append(w, writeReq{jobs: []Job{j}})
	}
	return w
}

// closeClean closes s and fails unless it left no journal: no segment
// and no spare.
func closeClean(t *testing.T, s *Bolt, path string) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if left := segmentsLeft(t, path); len(left) != 0 {
		t.Fatalf("a closed store left journal segments %v", left)
	}
	if _, err := os.Stat(sparePath(path)); !os.IsNotExist(err) {
		t.Fatalf("a closed store left the spare segment: %v", err)
	}
}

func segmentsLeft(t *testing.T, path string) []uint64 {
	t.Helper()
	segs, err := segments(path)
	if err != nil {
		t.Fatal(err)
	}
	return segs
}

// What a crash leaves, commits in the journal the file does not hold yet,
// is there after the next open; a frame cut short at the end of the last
// segment (a write the crash interrupted, never acknowledged) is not, and
// nothing after it is lost.
func TestJournalReplay(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	mustWrite(t, s, job("01OLD", "q", Queued))
	closeClean(t, s, path)

	leased := job("01A", "q", Leased)
	leased.Attempt = 1
	writeSegment(t, path, 7, writes(job("01A", "q", Queued), job("01B", "q", Queued)), writes(leased))
	torn := writeSegment(t, path, 8, writes(job("01C", "q", Queued)), writes(job("01TORN", "q", Queued)))
	torn = torn[:len(torn)-3]
	if err := os.WriteFile(segmentPath(path, 8), torn, 0o600); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	for id, st := range map[string]State{"01OLD": Queued, "01A": Leased, "01B": Queued, "01C": Queued} {
		j, err := s.Get(ctx, id)
		if err != nil || j.State != st || string(j.Payload) != "p-"+id {
			t.Fatalf("job %s after replay: %+v %v; want %s with its payload", id, j, err, st)
		}
	}
	if _, err := s.Get(ctx, "01TORN"); err == nil {
		t.Fatal("the torn frame's job was replayed")
	}
	counts, err := s.Counts(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[QueueState]int{{"q", Queued}: 3, {"q", Leased}: 1}; fmt.Sprint(counts) != fmt.Sprint(want) {
		t.Fatalf("counts after replay = %v, want %v", counts, want)
	}
	if left := segmentsLeft(t, path); len(left) != 1 || left[0] != 9 {
		t.Fatalf("segments after replay: %v, want only the new one, 9", left)
	}

	// Segments the file already holds (a crash between applying them and
	// removing them) are removed, not applied again: a replayed enqueue
	// would take back the job's later state.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	writeSegment(t, path, 9, writes(job("01A", "q", Queued)))
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaJournal), []byte("9"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	if j, err := s.Get(ctx, "01A"); err != nil || j.State != Leased {
		t.Fatalf("job 01A after reopening over an applied segment: %+v %v; want leased", j, err)
	}
	if left := segmentsLeft(t, path); len(left) != 1 || left[0] != 10 {
		t.Fatalf("segments: %v, want only the new one, 10", left)
	}
}

// A damaged frame before the last segment is no torn write: relay refuses
// to open rather than skip acknowledged commits.
func TestJournalDamagedRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b := writeSegment(t, path, 3, writes(job("01A", "q", Queued)))
	b[len(b)-1] ^= 0xff
	if err := os.WriteFile(segmentPath(path, 3), b, 0o600); err != nil {
		t.Fatal(err)
	}
	writeSegment(t, path, 4, writes(job("01B", "q", Queued)))
	_, err := OpenBolt(BoltOptions{Path: path})
	if err == nil || !strings.Contains(err.Error(), segmentPath(path, 3)) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("open over a damaged segment: %v; want an error naming it", err)
	}
	if left := segmentsLeft(t, path); len(left) != 2 {
		t.Fatalf("a refused open removed segments: %v", left)
	}
}

// Reads of the indexes see every acknowledged commit at once, and the
// journal segments the file holds are removed.
func TestJournalApplied(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	for i := range 3 {
		mustWrite(t, s, job(fmt.Sprintf("01J%d", i), "q", Queued))
		jobs, _, err := s.List(ctx, Filter{Queue: "q"})
		if err != nil || len(jobs) != i+1 {
			t.Fatalf("List right after commit %d: %d jobs, %v", i, len(jobs), err)
		}
		if left := segmentsLeft(t, path); len(left) != 1 {
			t.Fatalf("after an apply, segments %v; want only the current one", left)
		}
	}
	// Without a read waiting, commits are applied within applyAfter.
	mustWrite(t, s, job("01LATER", "q", Queued))
	deadline := time.Now().Add(10 * applyAfter)
	for {
		var inFile bool
		if err := s.db.View(func(tx *bolt.Tx) error {
			inFile = tx.Bucket([]byte(bucketJobs)).Get([]byte("01LATER")) != nil
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if inFile {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a commit was not applied to the file within %v", 10*applyAfter)
		}
		time.Sleep(10 * time.Millisecond)
	}
	closeClean(t, s, path)
}

// Applying a batch with each job's records merged into one write leaves
// the file exactly as writing them one by one does: records, bodies,
// every index and the counts.
func TestApplyFoldedMatchesInOrder(t *testing.T) {
	at := time.Unix(1_700_000_000, 0)
	mk := func(id string, st State, attempt uint32, lastErr string) Job {
		j := job(id, "q", st)
		j.CreatedAt, j.UpdatedAt, j.RunAfter = at, at, at
		j.Attempt, j.LastError = attempt, lastErr
		if st == Succeeded || st == Dead {
			j.FinishedAt = at.Add(time.Duration(attempt) * time.Second)
		}
		return j
	}
	keyed := mk("01K", Queued, 0, "")
	keyed.IdempotencyKey = "key"
	noBody := func(j Job) Job { j.Payload, j.IdempotencyKey = nil, ""; return j }
	cases := []struct {
		name   string
		before []Job // already in the file
		batch  []Job
	}{
		{"enqueue lease complete", nil, []Job{mk("01A", Queued, 0, ""), noBody(mk("01A", Leased, 1, "")), noBody(mk("01A", Succeeded, 1, ""))}},
		{"retry keeps the last error", nil, []Job{mk("01A", Queued, 0, ""), noBody(mk("01A", Retrying, 1, "boom")), noBody(mk("01A", Leased, 2, ""))}},
		{"job in the file", []Job{mk("01A", Queued, 0, "")}, []Job{noBody(mk("01A", Leased, 1, "")), noBody(mk("01A", Dead, 1, "gave up"))}},
		{"idempotency key", nil, []Job{keyed, noBody(mk("01K", Leased, 1, "")), mk("01L", Queued, 0, "")}},
		{"interleaved jobs", []Job{mk("01B", Leased, 1, "x")}, []Job{mk("01A", Queued, 0, ""), noBody(mk("01B", Succeeded, 1, "")), noBody(mk("01A", Leased, 1, "")), mk("01C", Queued, 0, "")}},
	}
	dump := func(t *testing.T, apply func(w *writeTx, batch []writeReq) error, c int) string {
		path := filepath.Join(t.TempDir(), "relay.db")
		s := openTest(t, path)
		if len(cases[c].before) > 0 {
			mustWrite(t, s, cases[c].before...)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var out bytes.Buffer
		err = db.Update(func(tx *bolt.Tx) error {
			w := newWriteTx(tx)
			if err := apply(w, writes(cases[c].batch...)); err != nil {
				return err
			}
			if err := w.flush(); err != nil {
				return err
			}
			for _, name := range allBuckets() {
				if name == bucketMeta {
					continue
				}
				_ = tx.Bucket([]byte(name)).ForEach(func(k, v []byte) error {
					fmt.Fprintf(&out, "%s %q %x\n", name, k, v)
					return nil
				})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			folded := dump(t, (*writeTx).applyFolded, i)
			inOrder := dump(t, (*writeTx).applyInOrder, i)
			if folded != inOrder {
				t.Fatalf("merged apply:\n%s\nrecord by record:\n%s", folded, inOrder)
			}
		})
	}
}

func FuzzReadFrame(f *testing.F) {
	j := job("01A", "q", Leased)
	j.IdempotencyKey, j.LastError, j.Result = "k", "e", []byte("r")
	f.Add(appendFrame(nil, append(writes(j), writeReq{del: []string{"01B"}})))
	f.Add(appendFrame(nil, nil))
	f.Add(endMark[:])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		recs, rest, err := readFrame(b)
		if err != nil {
			return
		}
		// What reads back writes the same frame again.
		again := appendFrame(nil, recs)
		if n := len(b) - len(rest); !bytes.Equal(again, b[:n]) {
			recs2, _, err := readFrame(again)
			if err != nil || fmt.Sprint(recs2) != fmt.Sprint(recs) {
				t.Fatalf("frame does not read back: %v %v", recs2, err)
			}
		}
	})
}

// A file of schema version 3 (no journal) opens as version 4 with its
// jobs, and a relay that reads only version 3 is then kept out, since the
// journal may hold commits the file does not.
func TestUpgradeV3(t *testing.T) {
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	mustWrite(t, s, job("01A", "q", Queued))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	setSchema := func(v string) {
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		if err := db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte(bucketMeta)).Put([]byte("schema"), []byte(v))
		}); err != nil {
			t.Fatal(err)
		}
	}
	setSchema("3")
	s = openTest(t, path)
	if j, err := s.Get(context.Background(), "01A"); err != nil || j.State != Queued {
		t.Fatalf("job after the upgrade: %+v %v", j, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	checkUpgraded(t, path)
}

// An acknowledged job is found by Bodies however its apply to the file
// interleaves with the read (a read of the file begun just before the
// apply, and a look in the overlay just after it, found it in neither).
func TestBodiesDuringApply(t *testing.T) {
	ctx := context.Background()
	s := openTest(t, filepath.Join(t.TempDir(), "relay.db"))
	stop := make(chan struct{})
	settled := make(chan struct{})
	go func() { // apply as often as the store will
		defer close(settled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := s.Counts(ctx); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	defer func() { close(stop); <-settled }()
	deadline := time.Now().Add(2 * time.Second)
	for round := 0; round < 500 && time.Now().Before(deadline); round++ {
		ids := make([]string, 2000)
		jobs := make([]Job, len(ids))
		for i := range ids {
			ids[i] = fmt.Sprintf("01B%03d%04d", round, i)
			jobs[i] = job(ids[i], "q", Queued)
		}
		mustWrite(t, s, jobs...) // durable: due to be applied any moment
		for range 3 {
			_, found, err := s.Bodies(ctx, ids)
			if err != nil {
				t.Fatal(err)
			}
			for i, ok := range found {
				if !ok {
					t.Fatalf("round %d: Bodies did not find job %s, acknowledged", round, ids[i])
				}
			}
		}
	}
}

// A group commit takes at least one write, then as many as fit both its
// bounds, records and bytes.
func TestTakeBatch(t *testing.T) {
	w := func(jobs, bytes int) writeReq { return writeReq{jobs: make([]Job, jobs), bytes: bytes} }
	cases := []struct {
		name          string
		pending       []writeReq
		wantN, wantJs int
	}{
		{"none", nil, 0, 0},
		{"all fit", []writeReq{w(1, 100), w(2, 100), w(3, 100)}, 3, 6},
		{"records bound", []writeReq{w(maxBatchJobs-1, 100), w(1, 100), w(1, 100)}, 2, maxBatchJobs},
		{"bytes bound", []writeReq{w(1, maxBatchBytes/2), w(1, maxBatchBytes/2), w(1, 1)}, 2, 2},
		{"one larger than both", []writeReq{w(maxBatchJobs+5, maxBatchBytes+1), w(1, 1)}, 1, maxBatchJobs + 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if n, js := takeBatch(c.pending); n != c.wantN || js != c.wantJs {
				t.Fatalf("takeBatch = %d writes, %d records; want %d, %d", n, js, c.wantN, c.wantJs)
			}
		})
	}
}

// An applied segment becomes the spare and the next segment reuses its
// file; a clean Close leaves neither.
func TestJournalReusesSegment(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	settle := func(id string) {
		t.Helper()
		mustWrite(t, s, job(id, "q", Queued))
		if _, err := s.Counts(ctx); err != nil { // applies what the journal holds
			t.Fatal(err)
		}
	}
	settle("01A")
	spare, err := os.Stat(sparePath(path))
	if err != nil {
		t.Fatalf("no spare after an apply: %v", err)
	}
	settle("01B")
	left := segmentsLeft(t, path)
	if len(left) != 1 {
		t.Fatalf("segments after two applies: %v, want the current one", left)
	}
	cur, err := os.Stat(segmentPath(path, left[0]))
	if err != nil {
		t.Fatal(err)
	}
	if !os.SameFile(spare, cur) {
		t.Fatal("the segment after the spare was made is a new file, not the spare's")
	}
	if _, err := os.Stat(sparePath(path)); err != nil {
		t.Fatalf("no spare after the second apply: %v", err)
	}
	closeClean(t, s, path)
}

// A reused file holds stale frames after its end mark, valid ones of the
// segment it was: they are never replayed, in the last segment or an
// earlier one, and a segment begun from the spare starts at its mark.
func TestJournalStaleFramesIgnored(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "relay.db")
	s := openTest(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	leased := job("01A", "q", Leased)
	leased.Attempt = 1
	stale := func(b []byte, jobs ...Job) []byte {
		b = append(b, endMark[:]...)
		return appendFrame(b, writes(jobs...))
	}
	seg7 := stale(appendFrame(nil, writes(job("01A", "q", Queued), leased)), job("01A", "q", Queued), job("01STALE7", "q", Queued))
	seg7 = append(seg7, "torn stale bytes"...)
	seg8 := stale(appendFrame(nil, writes(job("01B", "q", Queued))), job("01STALE8", "q", Queued))
	for seg, b := range map[uint64][]byte{7: seg7, 8: seg8} {
		if err := os.WriteFile(segmentPath(path, seg), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(sparePath(path), stale(nil, job("01SPARE", "q", Queued)), 0o600); err != nil {
		t.Fatal(err)
	}

	s = openTest(t, path)
	for id, st := range map[string]State{"01A": Leased, "01B": Queued} {
		if j, err := s.Get(ctx, id); err != nil || j.State != st {
			t.Fatalf("job %s after replay: %+v %v; want %s", id, j, err, st)
		}
	}
	for _, id := range []string{"01STALE7", "01STALE8", "01SPARE"} {
		if _, err := s.Get(ctx, id); err == nil {
			t.Fatalf("stale frame of job %s was replayed", id)
		}
	}
	// Segment 9 is segment 8's file: stale frames, behind a mark at 0.
	if frames, err := readSegment(path, 9, true); err != nil || len(frames) != 0 {
		t.Fatalf("the segment begun from the spare reads %d frames, %v; want none", len(frames), err)
	}
	mustWrite(t, s, job("01C", "q", Queued))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, path)
	for id, st := range map[string]State{"01A": Leased, "01B": Queued, "01C": Queued} {
		if j, err := s.Get(ctx, id); err != nil || j.State != st {
			t.Fatalf("job %s after reopening: %+v %v; want %s", id, j, err, st)
		}
	}
}
