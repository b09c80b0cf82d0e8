package queue

import (
	"context"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// NewJob is what a producer asks for.
type NewJob struct {
	Queue   string
	Payload []byte
	// MaxAttempts is how many deliveries the job gets before it is dead;
	// zero means Options.DefaultMaxAttempts.
	MaxAttempts uint32
	// LeaseDuration is how long a worker holds the job between
	// heartbeats; zero means Options.DefaultLease.
	LeaseDuration time.Duration
	// IdempotencyKey, if set, makes a second enqueue with the same key in
	// the same queue return the first job instead of adding one.
	IdempotencyKey string
	// RunAfter, if in the future, holds the job back until then.
	RunAfter time.Time
}

// Enqueued is one job Enqueue returns.
type Enqueued struct {
	Job store.Job
	// Existing is set when an idempotency key matched an earlier job,
	// which is returned as it is now.
	Existing bool
}

// validate checks one NewJob; field prefixes the field names in errors.
func validate(n *NewJob, field string, maxPayload int) error {
	if err := proto.CheckName("queue", n.Queue); err != nil {
		return invalid(field+"queue", "%v", err)
	}
	if len(n.Payload) > maxPayload {
		return invalid(field+"payload", "%d bytes; at most %d", len(n.Payload), maxPayload)
	}
	if n.MaxAttempts > MaxAttemptsLimit {
		return invalid(field+"max_attempts", "%d; at most %d", n.MaxAttempts, MaxAttemptsLimit)
	}
	if n.LeaseDuration != 0 && (n.LeaseDuration < MinLease || n.LeaseDuration > MaxLease) {
		return invalid(field+"lease_duration", "%s; want %s to %s", n.LeaseDuration, MinLease, MaxLease)
	}
	if len(n.IdempotencyKey) > MaxKeyLen {
		return invalid(field+"idempotency_key", "%d bytes; at most %d", len(n.IdempotencyKey), MaxKeyLen)
	}
	if !utf8.ValidString(n.IdempotencyKey) {
		return invalid(field+"idempotency_key", "not valid UTF-8")
	}
	for _, c := range []byte(n.IdempotencyKey) {
		if c == 0 {
			return invalid(field+"idempotency_key", "holds a zero byte")
		}
	}
	return nil
}

// Enqueue adds jobs, all or none, and returns once they are durable. A job
// whose idempotency key is already used in its queue (earlier, or earlier
// in the same batch) is not added: the first job is returned instead.
func (q *Queue) Enqueue(ctx context.Context, jobs []NewJob) ([]Enqueued, error) {
	if err := CheckNewJobs(jobs, q.opts.MaxPayload); err != nil {
		return nil, err
	}
	var bytes int64
	for i := range jobs {
		bytes += int64(len(jobs[i].Payload))
	}

	q.mu.Lock()
	if err := q.usable(); err != nil {
		q.mu.Unlock()
		return nil, fmt.Errorf("enqueueing: %w", err)
	}
	if q.live+len(jobs) > q.opts.MaxLiveJobs || q.bytes+bytes > q.opts.MaxLiveBytes {
		live, b := q.live, q.bytes
		q.mu.Unlock()
		return nil, fmt.Errorf("enqueueing: %w: %d unfinished jobs (%d payload bytes) held; limits %d jobs, %d bytes",
			ErrFull, live, b, q.opts.MaxLiveJobs, q.opts.MaxLiveBytes)
	}
	now := time.Now()
	out := make([]Enqueued, len(jobs))
	added := make([]*entry, 0, len(jobs))
	recs := make([]store.Job, 0, len(jobs))
	var batchKeys map[keyRef]int // keys of this batch's new jobs → index in out
	for i := range jobs {
		n := &jobs[i]
		if n.IdempotencyKey != "" {
			k := keyRef{n.Queue, n.IdempotencyKey}
			if first, ok := batchKeys[k]; ok {
				out[i] = Enqueued{Job: out[first].Job, Existing: true}
				continue
			}
			ex, err := q.byKey(ctx, n.Queue, n.IdempotencyKey)
			if err != nil {
				q.mu.Unlock()
				return nil, fmt.Errorf("enqueueing: %w", err)
			}
			if ex != nil {
				out[i] = Enqueued{Job: *ex, Existing: true}
				continue
			}
			if batchKeys == nil {
				batchKeys = map[keyRef]int{}
			}
			batchKeys[k] = i
		}
		tmp, j := q.newEntry(n, now)
		e := q.add(&tmp)
		q.setState(e, store.Queued)
		if now.UnixNano() < e.runAfter {
			q.pushTimer(e, e.runAfter)
		} else {
			q.makeReady(e)
		}
		added = append(added, e)
		recs = append(recs, j)
		out[i] = Enqueued{Job: j}
	}
	var c *store.Commit
	if len(added) > 0 {
		c = q.write(recs, added)
		for _, j := range recs {
			q.m.declare(j.Queue) // a new queue's series start at zero
			q.m.enqueued.WithLabelValues(j.Queue).Inc()
		}
		// Waiting workers get the new jobs now; their leases are written
		// after the jobs, so they are durable no sooner.
		q.dispatch(now)
	}
	q.mu.Unlock()
	if c != nil {
		if err := wait(c, "enqueueing"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type keyRef struct{ queue, key string }

// byKey finds the job with an idempotency key, as it is now; nil if there
// is none. The store sees keys as soon as their jobs are handed to it.
func (q *Queue) byKey(ctx context.Context, queue, key string) (*store.Job, error) {
	id, ok, err := q.st.LookupKey(ctx, queue, key)
	if err != nil || !ok || q.deleting[id] > 0 {
		return nil, err
	}
	j, err := q.current(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil // deleted meanwhile: the key is free
	}
	if err != nil {
		return nil, err
	}
	return &j, nil
}

// newEntry is the entry and first record of a new job.
func (q *Queue) newEntry(n *NewJob, now time.Time) (entry, store.Job) {
	id := q.ids.nextBytes(now)
	j := store.Job{
		ID:             q.idString(id),
		Queue:          n.Queue,
		State:          store.Queued,
		Payload:        n.Payload,
		PayloadSize:    len(n.Payload),
		MaxAttempts:    n.MaxAttempts,
		LeaseDuration:  n.LeaseDuration,
		IdempotencyKey: n.IdempotencyKey,
		RunAfter:       now,
		CreatedAt:      now,
		UpdatedAt:      now,
	}
	if j.MaxAttempts == 0 {
		j.MaxAttempts = q.opts.DefaultMaxAttempts
	}
	if j.LeaseDuration == 0 {
		j.LeaseDuration = q.opts.DefaultLease
	}
	if n.RunAfter.After(now) {
		j.RunAfter = n.RunAfter
	}
	e := entry{
		id:       id,
		runAfter: j.RunAfter.UnixNano(),
		leaseDur: j.LeaseDuration,
		maxAtt:   j.MaxAttempts,
		size:     uint32(len(n.Payload)),
		heapIdx:  -1,
		queue:    q.names.intern(n.Queue),
		slot:     noSlot,
	}
	return e, j
}
