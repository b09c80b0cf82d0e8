package pgqueue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/pgqueue"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/queue/queuetest"
)

// fast are intervals short enough for tests that wait on expiry and
// polling.
func fast(dsn string, q queue.Options) pgqueue.Options {
	return pgqueue.Options{DSN: dsn, Queue: q, PollInterval: 50 * time.Millisecond, ExpiryInterval: 50 * time.Millisecond,
		HealthInterval: 100 * time.Millisecond, CountsInterval: 100 * time.Millisecond}
}

func open(t testing.TB, o pgqueue.Options) *pgqueue.Queue {
	t.Helper()
	q, err := pgqueue.Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestConformance(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	queuetest.Run(t, func(t *testing.T, opts queue.Options) func() queue.Backend {
		dsn := srv.NewDB(t)
		return func() queue.Backend { return open(t, fast(dsn, opts)) }
	})
}

// BenchmarkBackend: jobs/s with 64 jobs in flight on one and on three
// replicas sharing one database (fsync on, as in production).
func BenchmarkBackend(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{Fsync: true})
	for _, replicas := range []int{1, 3} {
		for _, shape := range []struct{ workers, perLease int }{{64, 1}, {8, 8}} {
			b.Run(fmt.Sprintf("replicas=%d/workers=%d/lease=%d", replicas, shape.workers, shape.perLease), func(b *testing.B) {
				dsn := srv.NewDB(b)
				qs := make([]queue.Backend, replicas)
				for i := range qs {
					q := open(b, pgqueue.Options{DSN: dsn, MaxConns: 16})
					defer q.Close()
					qs[i] = q
				}
				queuetest.Bench(b, qs, shape.workers, shape.perLease)
			})
		}
	}
}
