package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Options configure a Queue. Zero values take the defaults named.
type Options struct {
	Store  store.Store
	Logger *slog.Logger
	// Registerer receives the queue's metrics; nil registers none.
	Registerer prometheus.Registerer

	// DefaultLease is a job's lease duration when its producer set none
	// (30s).
	DefaultLease time.Duration
	// DefaultMaxAttempts applies when the producer set none (25).
	DefaultMaxAttempts uint32
	// MaxPayload and MaxResult bound a job's payload and result (1 MiB).
	MaxPayload int
	MaxResult  int
	// Backoff spaces retries (1s doubling to 10m, with jitter).
	Backoff Backoff
	// MaxWait caps a long poll (60s).
	MaxWait time.Duration
	// RestartGrace is how long leases found at start stay valid without a
	// heartbeat; zero means each job's own lease duration.
	RestartGrace time.Duration
	// ReleaseGrace is how old a lease must be before a heartbeat that
	// lists every lease its worker holds releases it for not being listed
	// (5s): a younger one may be in a Lease response still on its way.
	ReleaseGrace time.Duration
	// MaxLeasesPerWorker bounds how many leases one worker holds (1000).
	MaxLeasesPerWorker int
	// MaxLiveJobs and MaxLiveBytes bound the jobs (and payload bytes) not
	// yet finished, which relay holds in memory: an enqueue past them is
	// refused with ErrFull (DefaultMaxLiveJobs, DefaultMaxLiveBytes).
	MaxLiveJobs  int
	MaxLiveBytes int64
	// MaxBacklog is how many store writes may wait for a commit before
	// new work is refused with ErrOverloaded (10,000).
	MaxBacklog int
}

// The live-job defaults are sized for the shipped relay pod's 1 GiB memory
// limit, from measurements of this queue with 100-byte payloads: ~1.4 KiB
// of RSS per queued job (200,000 queued: 284 MiB) and ~2.5 bytes of memory
// per payload byte. Both bounds full at once come to about 600 MiB, so
// relay answers 429 well before the kernel would kill it.
const (
	DefaultMaxLiveJobs  = 200_000
	DefaultMaxLiveBytes = 128 << 20
)

func (o *Options) setDefaults() {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.DefaultLease <= 0 {
		o.DefaultLease = 30 * time.Second
	}
	if o.DefaultMaxAttempts == 0 {
		o.DefaultMaxAttempts = 25
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1 << 20
	}
	if o.MaxResult <= 0 {
		o.MaxResult = 1 << 20
	}
	o.Backoff.setDefaults()
	if o.MaxWait <= 0 {
		o.MaxWait = 60 * time.Second
	}
	if o.ReleaseGrace <= 0 {
		o.ReleaseGrace = 5 * time.Second
	}
	if o.MaxLeasesPerWorker <= 0 {
		o.MaxLeasesPerWorker = 1000
	}
	if o.MaxLiveJobs <= 0 {
		o.MaxLiveJobs = DefaultMaxLiveJobs
	}
	if o.MaxLiveBytes <= 0 {
		o.MaxLiveBytes = DefaultMaxLiveBytes
	}
	if o.MaxBacklog <= 0 {
		o.MaxBacklog = 10_000
	}
}

// Limits on what producers may ask for.
const (
	MaxAttemptsLimit = 1000
	MinLease         = time.Second
	MaxLease         = 24 * time.Hour
	MaxKeyLen        = 256
	MaxErrorLen      = 4096
	MaxBatch         = 1000
)

// Errors. Callers test them with errors.Is; the wrapping error says which
// job and why.
var (
	// ErrLeaseLost: the lease named is not the caller's any more.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNotFound: no such job.
	ErrNotFound = store.ErrNotFound
	// ErrConflict: the job's state does not allow the change.
	ErrConflict = errors.New("not possible in the job's state")
	// ErrInvalid: a field is missing or out of range (see *InvalidError).
	ErrInvalid = errors.New("invalid request")
	// ErrFull: relay holds as many unfinished jobs as it may.
	ErrFull = errors.New("queue full")
	// ErrOverloaded: the store is behind; retry shortly.
	ErrOverloaded = errors.New("overloaded")
	// ErrTooManyLeases: the worker holds as many leases as it may.
	ErrTooManyLeases = errors.New("worker holds too many leases")
	// ErrClosed: the queue is shut down.
	ErrClosed = errors.New("queue closed")
)

// InvalidError names the field that is wrong.
type InvalidError struct {
	Field   string
	Problem string
}

func (e *InvalidError) Error() string { return e.Field + ": " + e.Problem }

// Unwrap makes errors.Is(err, ErrInvalid) true.
func (e *InvalidError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &InvalidError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Ref names one lease.
type Ref struct {
	JobID   string
	Attempt uint32
	Token   []byte
}

// Queue is the job state machine. Its methods are safe for concurrent
// use.
type Queue struct {
	opts Options
	st   store.Store
	log  *slog.Logger
	m    *metrics
	rate rates // what jobs did lately, for Rates (rate.go)

	pauseMu sync.Mutex // held over a pause's store write and its change in memory

	mu       sync.Mutex
	closed   bool
	paused   map[string]bool              // queues whose jobs are not leased
	deleting map[string]int               // ids whose deletion is not yet durable
	jobs     map[string]*entry            // live jobs, and finished ones until their record is durable
	ready    map[string]*readyHeap        // per queue: jobs that may be leased now
	nready   int                          // jobs in all ready heaps
	timers   timerHeap                    // when a lease expires or a job becomes ready
	held     map[string]map[string]*entry // per worker: its leased jobs
	keys     map[keyRef]*entry            // idempotency keys of jobs in jobs
	waiters  []*waiter                    // parked long polls, oldest first
	settling []settle                     // finished jobs waiting for their record to be durable
	counts   map[store.QueueState]int
	live     int
	bytes    int64
	seq      uint64
	ids      idGen
	next     time.Time // when run next wakes for timers

	kick    chan struct{}
	closing chan struct{}
	stopped chan struct{}
}

// entry is one job in memory.
type entry struct {
	job     store.Job
	seq     uint64    // ready order among jobs ready at the same time
	heapIdx int       // in its queue's ready heap, or -1
	timerAt time.Time // the pending timer, or zero
	ver     uint64    // records handed to the store
	live    bool      // counted in q.live and q.bytes
}

type keyRef struct{ queue, key string }

type settle struct {
	c   *store.Commit
	e   *entry
	ver uint64
}

// Open loads the live jobs from the store and starts the queue.
func Open(ctx context.Context, opts Options) (*Queue, error) {
	if opts.Store == nil {
		return nil, errors.New("opening queue: no store")
	}
	opts.setDefaults()
	q := &Queue{
		opts:     opts,
		st:       opts.Store,
		log:      opts.Logger,
		jobs:     map[string]*entry{},
		ready:    map[string]*readyHeap{},
		held:     map[string]map[string]*entry{},
		keys:     map[keyRef]*entry{},
		paused:   map[string]bool{},
		deleting: map[string]int{},
		kick:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	var err error
	if q.counts, err = q.st.Counts(ctx); err != nil {
		return nil, fmt.Errorf("opening queue: %w", err)
	}
	paused, err := q.st.Paused(ctx)
	if err != nil {
		return nil, fmt.Errorf("opening queue: %w", err)
	}
	for _, name := range paused {
		q.paused[name] = true
	}
	if err := q.load(ctx, time.Now()); err != nil {
		return nil, fmt.Errorf("opening queue: %w", err)
	}
	if q.m, err = newMetrics(q, opts.Registerer); err != nil {
		return nil, fmt.Errorf("opening queue: %w", err)
	}
	for k := range q.counts {
		q.m.declare(k.Queue)
	}
	go q.run()
	return q, nil
}

// load brings the store's live jobs into memory. Leases get the restart
// grace.
func (q *Queue) load(ctx context.Context, now time.Time) error {
	var leased, ready, later int
	err := q.st.Live(ctx, func(j store.Job) error {
		e := &entry{job: j, heapIdx: -1}
		q.addLive(e)
		switch j.State {
		case store.Leased:
			grace := q.opts.RestartGrace
			if grace <= 0 {
				grace = j.LeaseDuration
			}
			if d := now.Add(grace); j.LeaseDeadline.Before(d) {
				e.job.LeaseDeadline = d
			}
			q.holdings(j.LeasedBy)[j.ID] = e
			q.pushTimer(e, e.job.LeaseDeadline)
			leased++
		default:
			if !now.Before(j.RunAfter) {
				q.makeReady(e)
				ready++
			} else {
				q.pushTimer(e, j.RunAfter)
				later++
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	q.log.Info("queue loaded", "ready", ready, "scheduled", later, "leased", leased)
	return nil
}

// Close stops the queue: parked long polls return empty and every later
// call fails with ErrClosed. It does not close the store.
func (q *Queue) Close() error {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		<-q.stopped
		return nil
	}
	q.closed = true
	close(q.closing)
	q.mu.Unlock()
	<-q.stopped
	return nil
}

// Ready reports whether the queue can take work: open, with a healthy
// store that is not far behind.
func (q *Queue) Ready() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.usable()
}

// usable is Ready under q.mu.
func (q *Queue) usable() error {
	if q.closed {
		return ErrClosed
	}
	if err := q.st.Err(); err != nil {
		return err
	}
	if n := q.st.Backlog(); n > q.opts.MaxBacklog {
		return fmt.Errorf("%w: %d writes waiting for the store", ErrOverloaded, n)
	}
	return nil
}

// addLive starts tracking e as a live job.
func (q *Queue) addLive(e *entry) {
	q.jobs[e.job.ID] = e
	if e.job.IdempotencyKey != "" {
		q.keys[keyRef{e.job.Queue, e.job.IdempotencyKey}] = e
	}
	if !e.live {
		e.live = true
		q.live++
		q.bytes += int64(len(e.job.Payload))
	}
}

// setState moves e to st, keeping the counts.
func (q *Queue) setState(e *entry, st store.State, now time.Time) {
	q.rate.moved(e.job.Queue, e.job.State, st, now)
	if old := e.job.State; old != "" {
		k := store.QueueState{Queue: e.job.Queue, State: old}
		if q.counts[k]--; q.counts[k] <= 0 {
			delete(q.counts, k)
		}
	}
	q.counts[store.QueueState{Queue: e.job.Queue, State: st}]++
	e.job.State = st
	e.job.UpdatedAt = now
}

// finish takes a job that just reached an end state out of the live
// structures; it stays in q.jobs until its record is durable.
func (q *Queue) finish(e *entry, now time.Time) {
	q.removeReady(e)
	q.unhold(e)
	e.job.FinishedAt = now
	if e.live {
		e.live = false
		q.live--
		q.bytes -= int64(len(e.job.Payload))
	}
}

// unhold takes e out of its worker's leases.
func (q *Queue) unhold(e *entry) {
	if h := q.held[e.job.LeasedBy]; h != nil && h[e.job.ID] == e {
		delete(h, e.job.ID)
		if len(h) == 0 {
			delete(q.held, e.job.LeasedBy)
		}
	}
}

// write hands the records of es to the store, in order.
func (q *Queue) write(es ...*entry) *store.Commit {
	jobs := make([]store.Job, len(es))
	for i, e := range es {
		e.ver++
		jobs[i] = e.job
	}
	c := q.st.Write(jobs...)
	for _, e := range es {
		if e.job.State.Terminal() {
			q.settling = append(q.settling, settle{c: c, e: e, ver: e.ver})
		}
	}
	return c
}

// sweep forgets finished jobs whose records are durable: from then on the
// store answers for them.
func (q *Queue) sweep() {
	n := 0
	for _, s := range q.settling {
		select {
		case <-s.c.Done():
		default:
			q.settling[n] = s
			n++
			continue
		}
		if q.jobs[s.e.job.ID] == s.e && s.e.ver == s.ver && s.e.job.State.Terminal() {
			delete(q.jobs, s.e.job.ID)
			k := keyRef{s.e.job.Queue, s.e.job.IdempotencyKey}
			if q.keys[k] == s.e {
				delete(q.keys, k)
			}
		}
	}
	clear(q.settling[n:])
	q.settling = q.settling[:n]
}

// lookup finds a job: in memory if it is live (or just finished), else in
// the store. A job from the store is not in q.jobs; adopt puts it there
// before it changes.
func (q *Queue) lookup(ctx context.Context, id string) (*entry, error) {
	if e := q.jobs[id]; e != nil {
		return e, nil
	}
	if q.deleting[id] > 0 {
		return nil, store.ErrNotFound
	}
	j, err := q.st.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	return &entry{job: j, heapIdx: -1}, nil
}

// adopt makes a job read from the store the one in memory.
func (q *Queue) adopt(e *entry) {
	if q.jobs[e.job.ID] == nil {
		q.jobs[e.job.ID] = e
		if e.job.IdempotencyKey != "" {
			q.keys[keyRef{e.job.Queue, e.job.IdempotencyKey}] = e
		}
	}
}

func (q *Queue) holdings(worker string) map[string]*entry {
	h := q.held[worker]
	if h == nil {
		h = map[string]*entry{}
		q.held[worker] = h
	}
	return h
}

// wait waits for c; the store's commits are bounded by the disk, so it
// ignores the caller's context once the change is decided.
func wait(c *store.Commit, what string) error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
