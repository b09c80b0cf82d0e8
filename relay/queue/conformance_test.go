package queue_test

import (
	"context"
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
