package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// schemaVersion is the layout of the file; a file of another version is
// refused rather than misread. Version 4 is version 3 with a journal
// beside the file (journal.go) whose commits the file may not hold yet:
// a relay that reads version 3 would ignore them, so it is kept out.
const schemaVersion = "4"

// maxBatchJobs and maxBatchBytes bound one group commit (a frame of the
// journal); more waiting records go into the next one.
const (
	maxBatchJobs  = 8192
	maxBatchBytes = 64 << 20
)

// Buckets of the file.
const (
	bucketMeta     = "meta"
	bucketJobs     = "jobs"     // id → meta record (codec.go)
	bucketBodies   = "bodies"   // id → body record: payload, idempotency key
	bucketFinished = "finished" // finished-at (8 bytes) id → nil, of jobs retention prunes
	bucketByQS     = "by_qs"    // queue 0 state 0 id → nil
	bucketByQ      = "by_q"     // queue 0 id → nil
	bucketKeys     = "keys"     // queue 0 idempotency key → id
	bucketCounts   = "counts"   // queue 0 state → uint64
	bucketPaused   = "paused"   // queue → nil, for each paused queue
)

func allBuckets() []string {
	return []string{bucketMeta, bucketJobs, bucketBodies, bucketFinished, bucketByQS, bucketByQ, bucketKeys, bucketCounts, bucketPaused}
}

// BoltOptions configure OpenBolt.
type BoltOptions struct {
	// Path is the database file; it is created (mode 0600) if missing.
	Path string
	// LockTimeout bounds the wait for the file lock another process
	// holds; default 5s.
	LockTimeout time.Duration
	Logger      *slog.Logger
	// Registerer receives the store's metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Bolt is the embedded Store: one bbolt file, group-committed through a
// journal (journal.go, apply.go).
type Bolt struct {
	db   *bolt.DB
	path string
	log  *slog.Logger

	lastMap time.Time // the applier's last releaseMap
	jr      *journal  // the segment being appended to; the committer's
	applyCh chan applyReq
	applied chan struct{} // closed when the applier has stopped
	// spareMu keeps the spare journal segment's name still: the applier
	// makes an applied segment the spare, the committer takes it.
	spareMu sync.Mutex

	mu      sync.Mutex
	pending []writeReq
	over    overlay // what pending and unapplied hold, by job id and idempotency key
	closed  bool
	failed  error
	wake    chan struct{}
	stopped chan struct{}
	// Journaled commits not yet applied to the file, and the applier's
	// progress in frames (durable counts the frames journaled).
	unapplied      []writeReq
	unappliedJobs  int
	unappliedBytes int
	unappliedSince time.Time
	applying       bool
	applyNow       bool // a read waits for the file to catch up
	durable, done  uint64
	appliedOne     chan struct{} // closed and replaced at each apply

	commitSeconds prometheus.Histogram
	batchJobs     prometheus.Histogram
	applySeconds  prometheus.Histogram
}

type writeReq struct {
	jobs  []Job
	del   []string // ids to delete, after jobs
	c     *Commit
	bytes int // at least its size in the journal (recordBytes)
}

// recordBytes is at least the size of j's record in a journal frame: its
// variable fields and a bound on the rest.
func recordBytes(j *Job) int {
	return 160 + len(j.ID) + len(j.Queue) + len(j.IdempotencyKey) + len(j.Payload) +
		len(j.LeasedBy) + len(j.LeaseToken) + len(j.LastError) + len(j.Result)
}

// takeBatch is how many of pending, from the first, one group commit
// takes: at least one, then as many as fit maxBatchJobs and maxBatchBytes.
func takeBatch(pending []writeReq) (n, jobs int) {
	bytes := 0
	for n < len(pending) && (n == 0 || (jobs+len(pending[n].jobs) <= maxBatchJobs && bytes+pending[n].bytes <= maxBatchBytes)) {
		jobs += len(pending[n].jobs)
		bytes += pending[n].bytes
		n++
	}
	return n, jobs
}

// OpenBolt opens (or creates) the store at opts.Path and starts its
// committer.
func OpenBolt(opts BoltOptions) (*Bolt, error) {
	if opts.Path == "" {
		return nil, errors.New("opening store: no database path")
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 5 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := bolt.Open(opts.Path, 0o600, &bolt.Options{
		Timeout: opts.LockTimeout,
		// The free list is written at every commit (a page or a few)
		// rather than rebuilt at open, which reads every page of the file:
		// seconds and the whole file in RSS with a large backlog.
		FreelistType: bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("opening store %s: another process holds its lock (is another relay running on this file?)", opts.Path)
		}
		return nil, fmt.Errorf("opening store %s: %w", opts.Path, err)
	}
	upgraded := false
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		meta := tx.Bucket([]byte(bucketMeta))
		switch v := meta.Get([]byte("schema")); {
		case v == nil:
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) == "1":
			return errUpgrade
		case string(v) == "2":
			upgraded = true
			return upgradeV2(tx)
		case string(v) == "3": // the same layout, without a journal yet
			upgraded = true
			return meta.Put([]byte("schema"), []byte(schemaVersion))
		case string(v) != schemaVersion:
			return fmt.Errorf("the file has schema version %q; this relay reads version %s", v, schemaVersion)
		}
		return nil
	})
	switch {
	case errors.Is(err, errUpgrade):
		err = upgradeV1(db, opts.Logger)
	case err == nil && upgraded:
		opts.Logger.Info("store upgraded to schema version " + schemaVersion)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening store %s: %w", opts.Path, err)
	}
	s := &Bolt{
		db:         db,
		path:       opts.Path,
		log:        opts.Logger,
		wake:       make(chan struct{}, 1),
		stopped:    make(chan struct{}),
		applyCh:    make(chan applyReq, 1),
		applied:    make(chan struct{}),
		appliedOne: make(chan struct{}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_store_commit_seconds",
			Help:    "Time to append one group commit to the journal and fsync it.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		applySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_store_apply_seconds",
			Help:    "Time to write journaled commits into the database file in one transaction.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		batchJobs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_store_commit_jobs",
			Help:    "Job records written per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
	}
	if opts.Registerer != nil {
		backlog := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "relay_store_backlog",
			Help: "Writes waiting for the next group commit.",
		}, func() float64 { return float64(s.Backlog()) })
		for _, c := range []prometheus.Collector{s.commitSeconds, s.batchJobs, s.applySeconds, backlog} {
			if err := opts.Registerer.Register(c); err != nil {
				_ = db.Close()
				return nil, fmt.Errorf("registering store metrics: %w", err)
			}
		}
	}
	if s.jr, err = s.recover(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("opening store %s: %w", opts.Path, err)
	}
	s.releaseMap() // a file without a free list was read whole to find one
	go s.run()
	go s.apply()
	return s, nil
}

// Write implements Store.
func (s *Bolt) Write(jobs ...Job) *Commit { return s.enqueue(writeReq{jobs: jobs}) }

// Delete implements Store.
func (s *Bolt) Delete(ids ...string) *Commit { return s.enqueue(writeReq{del: ids}) }

// enqueue hands w to the committer.
func (s *Bolt) enqueue(w writeReq) *Commit {
	s.mu.Lock()
	switch {
	case s.failed != nil:
		s.mu.Unlock()
		return failedCommit(fmt.Errorf("%w: %w", ErrFailed, s.failed))
	case s.closed:
		s.mu.Unlock()
		return failedCommit(ErrClosed)
	}
	for i := range w.jobs {
		if err := validRecord(&w.jobs[i]); err != nil {
			s.failLocked(err)
			s.mu.Unlock()
			return failedCommit(fmt.Errorf("%w: %w", ErrFailed, err))
		}
		w.bytes += recordBytes(&w.jobs[i])
	}
	for _, id := range w.del {
		w.bytes += 16 + len(id)
	}
	if w.bytes > maxFrame {
		// Refused whole, before anything is written: the store stays
		// usable. The queue's payload and result caps keep it far off.
		s.mu.Unlock()
		return failedCommit(fmt.Errorf("a write of %d records and about %d bytes is more than one journal frame holds (%d bytes)", len(w.jobs)+len(w.del), w.bytes, maxFrame))
	}
	c := newCommit()
	w.c = c
	s.pending = append(s.pending, w)
	s.over.add(&w)
	s.mu.Unlock()
	s.poke()
	return c
}

// Backlog implements Store.
func (s *Bolt) Backlog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Err implements Store.
func (s *Bolt) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, s.failed)
	}
	return nil
}

// finishedKey is j's key in the retention index, nil unless j is
// succeeded, dead or cancelled (what retention prunes; a failed job stays
// until it is retried or deleted): when it finished (its last update if
// that is not set), then its id.
func finishedKey(j *Job, id string) []byte {
	if j.State != Succeeded && j.State != Dead && j.State != Cancelled {
		return nil
	}
	at := j.FinishedAt
	if at.IsZero() {
		at = j.UpdatedAt
	}
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(max(at.UnixNano(), 0)))
	return append(b, id...)
}

// key joins parts with a zero byte; queue names, states and keys never
// hold one (the queue validates them).
func key(parts ...string) []byte {
	n := len(parts) - 1
	for _, p := range parts {
		n += len(p)
	}
	b := make([]byte, 0, n)
	for i, p := range parts {
		if i > 0 {
			b = append(b, 0)
		}
		b = append(b, p...)
	}
	return b
}

// read is one whole job as the file has it, or ErrNotFound.
func read(tx *bolt.Tx, id []byte) (Job, error) {
	rec := tx.Bucket([]byte(bucketJobs)).Get(id)
	if rec == nil {
		return Job{}, ErrNotFound
	}
	j := Job{ID: string(id)}
	if err := decodeMeta(&j, rec, true); err != nil {
		return Job{}, fmt.Errorf("decoding job %s: %w", id, err)
	}
	if body := tx.Bucket([]byte(bucketBodies)).Get(id); body != nil {
		if err := decodeBody(&j, body); err != nil {
			return Job{}, fmt.Errorf("decoding job %s: %w", id, err)
		}
	}
	return j, nil
}

// Get implements Store: the job as the last Write handed over has it,
// durable or not.
func (s *Bolt) Get(ctx context.Context, id string) (Job, error) {
	p, pending := s.pendingJob(id)
	if pending && p.deleted {
		return Job{}, fmt.Errorf("getting job %s: %w", id, ErrNotFound)
	}
	var j Job
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		j, err = read(tx, []byte(id))
		return err
	})
	switch {
	case pending && errors.Is(err, ErrNotFound):
		return p.job, nil // not in the file yet
	case err != nil:
		return Job{}, fmt.Errorf("getting job %s: %w", id, err)
	case pending:
		return merge(j, p.job), nil
	}
	return j, nil
}

// Bodies implements Store. A body is in the file or, until the file
// holds it, in the overlay; a read of the file begun just before an apply
// transaction can miss what the overlay forgets after it, so the ids
// found in neither are read again whenever an apply finished meanwhile.
func (s *Bolt) Bodies(ctx context.Context, ids []string) ([]Job, []bool, error) {
	out, found := make([]Job, len(ids)), make([]bool, len(ids))
	// Two passes cover one apply; more applies finishing during every pass
	// only happen to ids that are truly gone.
	for pass := 1; ; pass++ {
		s.mu.Lock()
		applied := s.done
		s.mu.Unlock()
		missing := 0
		err := s.db.View(func(tx *bolt.Tx) error {
			bodies := tx.Bucket([]byte(bucketBodies))
			for i, id := range ids {
				if found[i] {
					continue
				}
				rec := bodies.Get([]byte(id))
				if rec == nil {
					// Not in the file yet: a job whose enqueue is not
					// applied has its body in the overlay.
					if p, ok := s.pendingJob(id); ok && !p.deleted {
						out[i], found[i] = p.job, true
					} else {
						missing++
					}
					continue
				}
				if err := decodeBody(&out[i], rec); err != nil {
					return fmt.Errorf("decoding job %s: %w", id, err)
				}
				found[i] = true
			}
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("reading job bodies: %w", err)
		}
		s.mu.Lock()
		again := s.done != applied
		s.mu.Unlock()
		if missing == 0 || !again || pass == 4 {
			return out, found, nil
		}
	}
}

// LookupKey implements Store.
func (s *Bolt) LookupKey(ctx context.Context, queue, idemKey string) (string, bool, error) {
	k := key(queue, idemKey)
	if id, ok := s.pendingKey(k); ok {
		return id, true, nil
	}
	var id string
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bucketKeys)).Get(k); v != nil {
			id = string(v)
		}
		return nil
	})
	if err != nil {
		return "", false, fmt.Errorf("looking up idempotency key: %w", err)
	}
	return id, id != "", nil
}

// List implements Store.
func (s *Bolt) List(ctx context.Context, f Filter) ([]Job, string, error) {
	if err := s.settle(ctx); err != nil {
		return nil, "", err
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	var jobs []Job
	var next string
	err := s.db.View(func(tx *bolt.Tx) error {
		var runs []*indexRun
		switch {
		case f.Queue != "" && f.State != "":
			runs = []*indexRun{seekRun(tx, bucketByQS, key(f.Queue, string(f.State), ""), f.After)}
		case f.Queue != "":
			runs = []*indexRun{seekRun(tx, bucketByQ, key(f.Queue, ""), f.After)}
		case f.State != "":
			// No index by state alone: each queue's run of that
			// state, merged by id.
			queues, err := queuesWith(tx, f.State)
			if err != nil {
				return err
			}
			for _, q := range queues {
				runs = append(runs, seekRun(tx, bucketByQS, key(q, string(f.State), ""), f.After))
			}
		default:
			runs = []*indexRun{seekRun(tx, bucketJobs, nil, f.After)}
		}
		for {
			id := nextID(runs)
			if id == nil {
				return ctx.Err()
			}
			if len(jobs) == f.Limit {
				next = jobs[len(jobs)-1].ID
				return nil
			}
			j, err := read(tx, id)
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("index names job %s, which has no record", id)
			}
			if err != nil {
				return err
			}
			jobs = append(jobs, j)
		}
	})
	if err != nil {
		return nil, "", fmt.Errorf("listing jobs: %w", err)
	}
	return jobs, next, nil
}

// indexRun is a cursor over the keys of one bucket that start with
// prefix, each naming a job by the id after the prefix; id is the
// current one, nil past the end.
type indexRun struct {
	c      *bolt.Cursor
	prefix []byte
	id     []byte
}

// seekRun starts a run at the first id after after ("" for the first).
func seekRun(tx *bolt.Tx, bucket string, prefix []byte, after string) *indexRun {
	r := &indexRun{c: tx.Bucket([]byte(bucket)).Cursor(), prefix: prefix}
	start := append(append([]byte(nil), prefix...), after...)
	k, _ := r.c.Seek(start)
	if after != "" && string(k) == string(start) {
		k, _ = r.c.Next()
	}
	r.at(k)
	return r
}

func (r *indexRun) at(k []byte) {
	r.id = nil
	if k != nil && hasPrefix(k, r.prefix) {
		r.id = k[len(r.prefix):]
	}
}

// nextID takes the smallest current id of runs and moves its run on;
// nil when every run has ended.
func nextID(runs []*indexRun) []byte {
	var low *indexRun
	for _, r := range runs {
		if r.id != nil && (low == nil || string(r.id) < string(low.id)) {
			low = r
		}
	}
	if low == nil {
		return nil
	}
	id := low.id
	k, _ := low.c.Next()
	low.at(k)
	return id
}

// queuesWith names the queues that have jobs in state st, from the
// counts (kept in the same transactions as the jobs).
func queuesWith(tx *bolt.Tx, st State) ([]string, error) {
	var queues []string
	err := tx.Bucket([]byte(bucketCounts)).ForEach(func(k, v []byte) error {
		q, s, ok := splitCountKey(k)
		if !ok {
			return fmt.Errorf("malformed count key %q", k)
		}
		if s == st {
			queues = append(queues, q)
		}
		return nil
	})
	return queues, err
}

// splitCountKey is the queue and state of a key of the counts bucket.
func splitCountKey(k []byte) (string, State, bool) {
	for i, c := range k {
		if c == 0 {
			return string(k[:i]), State(k[i+1:]), true
		}
	}
	return "", "", false
}

func hasPrefix(b, prefix []byte) bool {
	return len(b) >= len(prefix) && string(b[:len(prefix)]) == string(prefix)
}

// Live implements Store. The records carry no payload, result or last
// error: only what the queue keeps in memory (and PayloadSize).
func (s *Bolt) Live(ctx context.Context, fn func(Job) error) error {
	if err := s.settle(ctx); err != nil {
		return err
	}
	n := 0
	err := s.db.View(func(tx *bolt.Tx) error {
		recs := tx.Bucket([]byte(bucketJobs))
		for _, st := range []State{Queued, Leased, Retrying} {
			queues, err := queuesWith(tx, st)
			if err != nil {
				return fmt.Errorf("loading live jobs: %w", err)
			}
			for _, q := range queues {
				run := []*indexRun{seekRun(tx, bucketByQS, key(q, string(st), ""), "")}
				for id := nextID(run); id != nil; id = nextID(run) {
					rec := recs.Get(id)
					if rec == nil {
						return fmt.Errorf("loading live jobs: index names job %s, which has no record", id)
					}
					j := Job{ID: string(id)}
					if err := decodeMeta(&j, rec, false); err != nil {
						return fmt.Errorf("loading live jobs: decoding job %s: %w", id, err)
					}
					if err := fn(j); err != nil {
						return err
					}
					if n++; n%releaseRecords == 0 {
						s.dropPages(tx)
					}
				}
			}
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		s.dropPages(tx)
		return nil
	})
	return err
}

// Finished implements Store.
func (s *Bolt) Finished(ctx context.Context, before time.Time, limit int) ([]string, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		c := tx.Bucket([]byte(bucketFinished)).Cursor()
		for k, _ := c.First(); k != nil && len(ids) < limit; k, _ = c.Next() {
			if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) >= before.UnixNano() {
				break
			}
			ids = append(ids, string(k[8:]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("finding finished jobs: %w", err)
	}
	return ids, nil
}

// Counts implements Store.
func (s *Bolt) Counts(ctx context.Context) (map[QueueState]int, error) {
	if err := s.settle(ctx); err != nil {
		return nil, err
	}
	out := map[QueueState]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketCounts)).ForEach(func(k, v []byte) error {
			q, st, ok := splitCountKey(k)
			if !ok || len(v) != 8 {
				return fmt.Errorf("malformed count %q", k)
			}
			out[QueueState{Queue: q, State: st}] = int(binary.BigEndian.Uint64(v))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading counts: %w", err)
	}
	return out, nil
}
