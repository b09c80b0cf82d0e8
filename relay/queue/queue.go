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
	// yet finished: an enqueue past them is refused with ErrFull
	// (DefaultMaxLiveJobs, DefaultMaxLiveBytes). Memory holds an index
	// entry per live job; payloads are in the store.
	MaxLiveJobs  int
	MaxLiveBytes int64
	// MaxBacklog is how many store writes may wait for a commit before
	// new work is refused with ErrOverloaded (10,000).
	MaxBacklog int
	// Retain is how long succeeded, dead and cancelled jobs are kept
	// before they and their idempotency keys are deleted (as relay/pgqueue
	// does); zero keeps them.
	Retain time.Duration
}

// The live-job defaults, measured with relay serve (docs/relay.md): a
// live job costs ~130 bytes of memory (its index entry and id slot; the
// payload is on disk), so 2,000,000 queued small jobs are about a third of
// the shipped relay pod's 1 GiB limit, and payloads are bounded by what
// the volume (10 GiB shipped) should give the backlog.
const (
	DefaultMaxLiveJobs  = 2_000_000
	DefaultMaxLiveBytes = 1 << 30
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
	paused   map[string]bool                // queues whose jobs are not leased
	deleting map[string]int                 // ids whose deletion is not yet durable
	arena    arena                          // the live jobs' entries
	byID     idTable                        // live job id → arena slot
	names    names                          // queue and worker names the entries refer to
	ready    map[uint32]*readyHeap          // per queue: jobs that may be leased now
	nready   int                            // jobs in all ready heaps
	timers   timerHeap                      // when a lease expires or a job becomes ready
	held     map[uint32]map[uint32]struct{} // per worker: the slots of its leased jobs
	waiters  []*waiter                      // parked long polls, oldest first
	counts   map[store.QueueState]int
	live     int
	bytes    int64
	seq      uint64
	ids      idGen
	next     time.Time // when run next wakes for timers
	pruned   time.Time // when run last pruned

	kick    chan struct{}
	closing chan struct{}
	stopped chan struct{}
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
		ready:    map[uint32]*readyHeap{},
		held:     map[uint32]map[uint32]struct{}{},
		paused:   map[string]bool{},
		deleting: map[string]int{},
		kick:     make(chan struct{}, 1),
		closing:  make(chan struct{}),
		stopped:  make(chan struct{}),
	}
	q.byID.a = &q.arena
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

// load builds the index of the store's live jobs. Leases get the restart
// grace.
func (q *Queue) load(ctx context.Context, now time.Time) error {
	var leased, ready, later int
	err := q.st.Live(ctx, func(j store.Job) error {
		tmp, ok := q.entryOf(&j)
		if !ok {
			return fmt.Errorf("job %q: not an id this relay makes", j.ID)
		}
		e := q.add(&tmp)
		switch j.State {
		case store.Leased:
			grace := q.opts.RestartGrace
			if grace <= 0 {
				grace = j.LeaseDuration
			}
			if d := now.Add(grace).UnixNano(); e.deadline < d {
				e.deadline = d
			}
			q.hold(e)
			q.pushTimer(e, e.deadline)
			leased++
		default:
			if now.UnixNano() >= e.runAfter {
				q.makeReady(e)
				ready++
			} else {
				q.pushTimer(e, e.runAfter)
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

// add puts a copy of e in the index as a live job.
func (q *Queue) add(e *entry) *entry {
	p := q.arena.alloc(e)
	p.heapIdx, p.timerAt = -1, 0
	q.byID.put(p.id, p.slot)
	q.live++
	q.bytes += int64(p.size)
	return p
}

// drop takes a job that just finished out of memory: from now on the
// store answers for it (it sees the finishing record as soon as it is
// handed over). A job read from the store is not in memory.
func (q *Queue) drop(e *entry) {
	if e.slot == noSlot {
		return
	}
	q.removeReady(e)
	q.unhold(e)
	q.byID.remove(e.id)
	q.live--
	q.bytes -= int64(e.size)
	q.arena.release(e)
}

// setState moves e to st, keeping the counts.
func (q *Queue) setState(e *entry, st store.State) {
	name := q.names.name(e.queue)
	q.rate.moved(name, e.State(), st, time.Now())
	if old := e.State(); old != "" {
		k := store.QueueState{Queue: name, State: old}
		if q.counts[k]--; q.counts[k] <= 0 {
			delete(q.counts, k)
		}
	}
	q.counts[store.QueueState{Queue: name, State: st}]++
	e.state = stateCode(st)
}

// finish takes a job that just reached an end state out of the ready
// heap and its worker's leases; write then drops it from memory.
func (q *Queue) finish(e *entry) {
	q.removeReady(e)
	q.unhold(e)
}

// hold records e as leased by its worker.
func (q *Queue) hold(e *entry) {
	h := q.held[e.worker]
	if h == nil {
		h = map[uint32]struct{}{}
		q.held[e.worker] = h
	}
	h[e.slot] = struct{}{}
}

// unhold takes e out of its worker's leases.
func (q *Queue) unhold(e *entry) {
	if e.slot == noSlot {
		return
	}
	if h := q.held[e.worker]; h != nil {
		if _, ok := h[e.slot]; ok {
			delete(h, e.slot)
			if len(h) == 0 {
				delete(q.held, e.worker)
			}
		}
	}
}

// write hands the records of jobs to the store, in order, and drops the
// finished ones from memory. Each record is jobOf its entry, with what
// the caller adds (a last error, a result).
func (q *Queue) write(recs []store.Job, es []*entry) *store.Commit {
	c := q.st.Write(recs...)
	for _, e := range es {
		if e.State().Terminal() {
			q.drop(e)
		}
	}
	return c
}

// write1 is write of one entry's record.
func (q *Queue) write1(rec store.Job, e *entry) *store.Commit {
	return q.write([]store.Job{rec}, []*entry{e})
}

// writeAll is write of entries' records as they are.
func (q *Queue) writeAll(es []*entry, now time.Time) *store.Commit {
	recs := make([]store.Job, len(es))
	for i, e := range es {
		recs[i] = q.jobOf(e, now)
	}
	return q.write(recs, es)
}

// lookup finds a job: its live entry, else an entry (not in memory) for
// its record in the store; adopt makes such an entry live. rec is the
// store's record when it was read.
func (q *Queue) lookup(ctx context.Context, id string) (e *entry, rec *store.Job, err error) {
	if e := q.find(id); e != nil {
		return e, nil, nil
	}
	if q.deleting[id] > 0 {
		return nil, nil, store.ErrNotFound
	}
	j, err := q.st.Get(ctx, id)
	if err != nil {
		return nil, nil, err
	}
	tmp, ok := q.entryOf(&j)
	if !ok {
		return nil, nil, fmt.Errorf("job %q: not an id this relay makes", id)
	}
	return &tmp, &j, nil
}

// adopt makes an entry lookup read from the store live again.
func (q *Queue) adopt(e *entry) *entry {
	if e.slot != noSlot {
		return e
	}
	return q.add(e)
}

// current is the job as it is now: the store's record (which every change
// is handed to at once) with what only memory has, a heartbeat's later
// lease deadline.
func (q *Queue) current(ctx context.Context, id string) (store.Job, error) {
	j, err := q.st.Get(ctx, id)
	if err != nil {
		return store.Job{}, err
	}
	if e := q.find(id); e != nil && e.State() == store.Leased && e.state == stateCode(j.State) && e.attempt == j.Attempt {
		j.LeaseDeadline = timeOf(e.deadline)
	}
	return j, nil
}

// wait waits for c; the store's commits are bounded by the disk, so it
// ignores the caller's context once the change is decided.
func wait(c *store.Commit, what string) error {
	if err := c.Err(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
