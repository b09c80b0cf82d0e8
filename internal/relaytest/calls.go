package relaytest

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Enqueue adds jobs and returns their ids.
func (r *Relay) Enqueue(jobs ...queue.NewJob) []string {
	r.helper()
	res, err := r.Queue().Enqueue(context.Background(), jobs)
	if err != nil {
		r.fatalf("enqueue: %v", err)
	}
	ids := make([]string, len(res))
	for i, e := range res {
		ids[i] = e.Job.ID
	}
	return ids
}

// Get reads a job.
func (r *Relay) Get(id string) store.Job {
	r.helper()
	j, err := r.Queue().Get(context.Background(), id)
	if err != nil {
		r.fatalf("get %s: %v", id, err)
	}
	return j
}

// WaitTerminal waits until every job has ended (bounded by d) and returns
// them.
func (r *Relay) WaitTerminal(d time.Duration, ids ...string) []store.Job {
	r.helper()
	deadline := time.Now().Add(d)
	for {
		out := make([]store.Job, len(ids))
		done := true
		for i, id := range ids {
			out[i] = r.Get(id)
			done = done && out[i].State.Terminal()
		}
		if done {
			return out
		}
		if time.Now().After(deadline) {
			var open []string
			for _, j := range out {
				if !j.State.Terminal() {
					open = append(open, fmt.Sprintf("%s:%s(attempt %d)", j.ID, j.State, j.Attempt))
				}
			}
			r.fatalf("%d jobs not finished after %s: %s", len(open), d, strings.Join(open, " "))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Dial connects a client as id, closed when the test ends.
func (r *Relay) Dial(id keys.Identity) *client.Client {
	r.helper()
	c, err := r.DialOver(id, nil)
	if err != nil {
		r.fatalf("dial: %v", err)
	}
	return c
}

// DialOver connects a client as id over pc (nil: a socket of its own)
// and returns the error a refused dial gets. A client it returns is
// closed when the test ends (from New: the caller closes it).
func (r *Relay) DialOver(id keys.Identity, pc net.PacketConn) (*client.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{Addr: r.Addr, Identity: id, RelayPin: r.ID.Pin(), PacketConn: pc})
	if err != nil {
		return nil, err
	}
	if r.t != nil {
		r.t.Cleanup(func() { _ = c.Close() })
	}
	return c, nil
}
