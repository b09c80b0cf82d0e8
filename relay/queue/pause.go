package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/tunnel-dev/tunnel/relay/proto"
)

// CheckQueueName checks the queue name of a pause or resume.
func CheckQueueName(name string) error {
	if err := proto.CheckName("queue", name); err != nil {
		return invalid("queue", "%v", err)
	}
	return nil
}

// Pause stops leases of the queue until Resume: long polls get nothing of
// it, enqueues go on. It is durable when it returns.
func (q *Queue) Pause(ctx context.Context, name string) error {
	return q.setPaused(ctx, name, true)
}

// Resume lets the queue's jobs be leased again.
func (q *Queue) Resume(ctx context.Context, name string) error {
	return q.setPaused(ctx, name, false)
}

func (q *Queue) setPaused(ctx context.Context, name string, paused bool) error {
	what := "pausing queue " + name
	if !paused {
		what = "resuming queue " + name
	}
	if err := CheckQueueName(name); err != nil {
		return err
	}
	// pauseMu orders the store's record and memory alike.
	q.pauseMu.Lock()
	defer q.pauseMu.Unlock()
	q.mu.Lock()
	err := q.usable()
	q.mu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if err := q.st.SetPaused(ctx, name, paused); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if paused {
		q.paused[name] = true
		return nil
	}
	delete(q.paused, name)
	q.dispatch(time.Now())
	return nil
}

// Paused names the paused queues, sorted.
func (q *Queue) Paused(ctx context.Context) ([]string, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, fmt.Errorf("listing paused queues: %w", ErrClosed)
	}
	return slices.Sorted(func(yield func(string) bool) {
		for name := range q.paused {
			if !yield(name) {
				return
			}
		}
	}), nil
}
