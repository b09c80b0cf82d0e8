package store

import (
	"context"
	"errors"
	"time"
)

// Store keeps job records. The queue is its only writer.
type Store interface {
	// Write hands records over for writing and returns at once. Records are
	// written in the order Write is called; the records of one call are
	// written atomically, each replacing the job's earlier record, except
	// that a job's payload, idempotency key and creation time are those of
	// its first record, and a record with no LastError keeps the one
	// before. Get and LookupKey see a record as soon as it is handed over.
	// The
	// Commit says when they are durable. After a failed commit the store
	// refuses every later Write with ErrFailed.
	Write(jobs ...Job) *Commit
	// Delete hands over the removal of records (and their idempotency
	// keys), in order with Write; a missing id is no error.
	Delete(ids ...string) *Commit
	// Backlog is how many Writes are waiting to be committed.
	Backlog() int
	// Get returns one job as the Writes handed over so far have it
	// (durable or not), or ErrNotFound.
	Get(ctx context.Context, id string) (Job, error)
	// Bodies reads the body fields of jobs (payload, idempotency key,
	// creation time); found[i] is false for a job that is not there.
	Bodies(ctx context.Context, ids []string) (bodies []Job, found []bool, err error)
	// Finished lists up to limit succeeded, dead or cancelled jobs that
	// finished before before, oldest first, for pruning.
	Finished(ctx context.Context, before time.Time, limit int) ([]string, error)
	// List returns jobs matching f in id (creation) order, and the cursor
	// of the next page, empty on the last one.
	List(ctx context.Context, f Filter) (jobs []Job, next string, err error)
	// LookupKey finds the job enqueued with an idempotency key in a queue.
	LookupKey(ctx context.Context, queue, key string) (id string, ok bool, err error)
	// Live calls fn for every job that is queued, leased or retrying, by
	// state then id, with the job's state and lease but not its payload,
	// result or last error (PayloadSize is set).
	Live(ctx context.Context, fn func(Job) error) error
	// Counts is the number of jobs in each queue and state.
	Counts(ctx context.Context) (map[QueueState]int, error)
	// SetPaused records whether a queue is paused, durably when it
	// returns.
	SetPaused(ctx context.Context, queue string, paused bool) error
	// Paused names the paused queues, sorted.
	Paused(ctx context.Context) ([]string, error)
	// Err is nil while the store is healthy, and the commit error once a
	// commit has failed.
	Err() error
	// Close commits what is waiting and closes the store.
	Close() error
}

// QueueState names one cell of Counts.
type QueueState struct {
	Queue string
	State State
}

// Filter selects jobs for List.
type Filter struct {
	// Queue and State narrow the list; empty means any.
	Queue string
	State State
	// After is the cursor: list jobs after this id.
	After string
	// Limit is the page size (default 100, at most 1000).
	Limit int
}

// Errors.
var (
	ErrNotFound = errors.New("no such job")
	ErrClosed   = errors.New("store closed")
	// ErrFailed is returned once a commit has failed: what is in memory
	// may be ahead of the file, so the store refuses everything after it.
	// Restart relay; the file holds every acknowledged change.
	ErrFailed = errors.New("store failed")
)

// Commit is a pending Write.
type Commit struct {
	done chan struct{}
	err  error
}

func newCommit() *Commit { return &Commit{done: make(chan struct{})} }

// failedCommit is an already finished Commit that failed with err.
func failedCommit(err error) *Commit {
	c := newCommit()
	c.finish(err)
	return c
}

func (c *Commit) finish(err error) {
	c.err = err
	close(c.done)
}

// Done is closed when the write is durable or has failed.
func (c *Commit) Done() <-chan struct{} { return c.done }

// Err is the commit's result once Done is closed.
func (c *Commit) Err() error {
	<-c.done
	return c.err
}

// Wait waits for the commit or ctx. An error from ctx says nothing about
// whether the write became durable.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}
