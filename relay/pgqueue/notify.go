package pgqueue

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// channel is the LISTEN/NOTIFY channel; a payload is "replica queue".
const channel = "relay_jobs"

// notifyEvery debounces pg_notify: at most one per queue this often.
const notifyEvery = 5 * time.Millisecond

// wakeups wakes this replica's parked long polls by queue.
type wakeups struct {
	mu      sync.Mutex
	closed  bool
	waiters map[string]map[chan struct{}]bool // per queue
	dirty   map[string]bool                   // queues to tell the other replicas about
	kick    chan struct{}
	replica string
}

func newWakeups() *wakeups {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &wakeups{waiters: map[string]map[chan struct{}]bool{}, dirty: map[string]bool{}, kick: make(chan struct{}, 1), replica: hex.EncodeToString(b[:])}
}

// park registers a waiter for queues; the channel gets a value when one of
// them may have work. Call the function returned when done.
func (w *wakeups) park(queues []string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		ch <- struct{}{}
		return ch, func() {}
	}
	for _, name := range queues {
		m := w.waiters[name]
		if m == nil {
			m = map[chan struct{}]bool{}
			w.waiters[name] = m
		}
		m[ch] = true
	}
	return ch, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, name := range queues {
			if m := w.waiters[name]; m != nil {
				delete(m, ch)
				if len(m) == 0 {
					delete(w.waiters, name)
				}
			}
		}
	}
}

// local wakes this replica's waiters for queue.
func (w *wakeups) local(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for ch := range w.waiters[name] {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// all wakes every waiter (after a LISTEN gap: notifications may be lost).
func (w *wakeups) all() {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.waiters {
		for ch := range m {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

func (w *wakeups) closeAll() {
	w.all()
	w.mu.Lock()
	w.closed = true
	w.mu.Unlock()
}

// jobsReady says that a commit made jobs of queue leasable: local long
// polls wake now, other replicas after the next debounced pg_notify.
func (q *Queue) jobsReady(name string) {
	q.wake.local(name)
	q.wake.mu.Lock()
	q.wake.dirty[name] = true
	q.wake.mu.Unlock()
	select {
	case q.wake.kick <- struct{}{}:
	default:
	}
}

// runNotify sends the debounced pg_notify calls, after the commits that
// caused them (never from a trigger: NOTIFY holds a global lock at commit).
func (q *Queue) runNotify() {
	for {
		select {
		case <-q.ctx.Done():
			return
		case <-q.wake.kick:
		}
		q.wake.mu.Lock()
		payloads := make([]string, 0, len(q.wake.dirty))
		for name := range q.wake.dirty {
			payloads = append(payloads, q.wake.replica+" "+name)
		}
		clear(q.wake.dirty)
		q.wake.mu.Unlock()
		ctx, cancel := context.WithTimeout(q.ctx, 5*time.Second)
		_, err := q.pool.Exec(ctx, `SELECT pg_notify($1, p) FROM unnest($2::text[]) AS p`, channel, payloads)
		cancel()
		if err != nil && q.ctx.Err() == nil {
			q.log.Debug("pg_notify failed; other replicas find the jobs by polling", "err", redact(err, q.secret))
		}
		select {
		case <-q.ctx.Done():
			return
		case <-time.After(notifyEvery):
		}
	}
}

// runListen holds one connection in LISTEN and wakes local waiters for
// other replicas' jobs, reconnecting after a failure.
func (q *Queue) runListen() {
	for q.ctx.Err() == nil {
		err := q.listen()
		if q.ctx.Err() != nil {
			return
		}
		q.log.Debug("LISTEN connection lost; reconnecting", "err", redact(err, q.secret))
		q.wake.all()
		select {
		case <-q.ctx.Done():
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (q *Queue) listen() error {
	conn, err := q.pool.Acquire(q.ctx)
	if err != nil {
		return err
	}
	// The connection leaves the pool for good: it is listening.
	c := conn.Hijack()
	defer c.Close(context.Background())
	if _, err := c.Exec(q.ctx, "LISTEN "+pgx.Identifier{channel}.Sanitize()); err != nil {
		return err
	}
	q.wake.all() // anything committed before LISTEN took effect
	for {
		n, err := c.WaitForNotification(q.ctx)
		if err != nil {
			return err
		}
		replica, name, ok := strings.Cut(n.Payload, " ")
		if ok && replica != q.wake.replica {
			q.wake.local(name)
		}
	}
}

// queueOf caches each job's queue, which never changes: authorising a
// heartbeat or a settle then costs no query.
type queueOf struct {
	mu sync.Mutex
	m  map[string]string
}

const queueOfMax = 200_000

func (c *queueOf) init() { c.m = map[string]string{} }

func (c *queueOf) get(id string) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	name, ok := c.m[id]
	return name, ok
}

func (c *queueOf) put(id, name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= queueOfMax {
		clear(c.m)
	}
	c.m[id] = name
}
