package queue_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/queue/queuetest"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// embedded is a Queue with the bbolt store it runs on: closing it closes
// both, as relay does at exit.
type embedded struct {
	*queue.Queue
	st store.Store
}

func (e embedded) Close() error {
	err := e.Queue.Close()
	if cerr := e.st.Close(); err == nil {
		err = cerr
	}
	return err
}

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T, opts queue.Options) func() queue.Backend {
		path := filepath.Join(t.TempDir(), "relay.db")
		return func() queue.Backend {
			st, err := store.OpenBolt(store.BoltOptions{Path: path})
			if err != nil {
				t.Fatal(err)
			}
			o := opts
			o.Store = st
			q, err := queue.Open(context.Background(), o)
			if err != nil {
				_ = st.Close()
				t.Fatal(err)
			}
			return embedded{Queue: q, st: st}
		}
	})
}

// BenchmarkBackend is the embedded store's figure beside the PostgreSQL
// one (relay/pgqueue's BenchmarkBackend): 64 jobs in flight.
func BenchmarkBackend(b *testing.B) {
	for _, shape := range []struct{ workers, perLease int }{{64, 1}, {8, 8}} {
		b.Run(fmt.Sprintf("workers=%d/lease=%d", shape.workers, shape.perLease), func(b *testing.B) {
			st, err := store.OpenBolt(store.BoltOptions{Path: filepath.Join(b.TempDir(), "relay.db")})
			if err != nil {
				b.Fatal(err)
			}
			q, err := queue.Open(context.Background(), queue.Options{Store: st})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			defer q.Close()
			queuetest.Bench(b, []queue.Backend{q}, shape.workers, shape.perLease)
		})
	}
}
