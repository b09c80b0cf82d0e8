package client_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// A worker's whole cycle against a real relay on loopback: a producer
// enqueues a job; the worker dials relay with its identity, leases the
// job, heartbeats the lease and completes it with a result.
func Example() {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// The worker's identity, as `bunny keys` would write it.
	dir, err := os.MkdirTemp("", "example-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if _, err := keys.WriteIdentity(dir, "bunny", false); err != nil {
		log.Fatal(err)
	}
	id, err := keys.LoadIdentity(filepath.Join(dir, keys.IdentityCertFile), filepath.Join(dir, keys.IdentityKeyFile))
	if err != nil {
		log.Fatal(err)
	}

	// A relay whose workers file lets this identity work queue "resize".
	relay, err := relaytest.New(relaytest.Options{Worker: id, Queues: []string{"resize"}})
	if err != nil {
		log.Fatal(err)
	}
	defer relay.Close()
	jobID := relay.Enqueue(queue.NewJob{Queue: "resize", Payload: []byte("cat.png 64x64")})[0]

	c, err := client.Dial(ctx, client.Options{Addr: relay.Addr, Identity: id, RelayPin: relay.ID.Pin()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	jobs, err := c.Lease(ctx, client.LeaseOptions{Max: 1, Wait: 5 * time.Second})
	if err != nil || len(jobs) != 1 {
		log.Fatalf("lease: %d jobs, %v", len(jobs), err)
	}
	j := jobs[0]
	fmt.Printf("leased a job from %q: %s (attempt %d)\n", j.Queue, j.Payload, j.Lease.Attempt)

	sts, err := c.Heartbeat(ctx, []client.Lease{j.Lease}, true)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("heartbeat:", sts[0].State)

	dup, err := c.Complete(ctx, j.Lease, []byte("cat-64.png"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("completed; duplicate:", dup)

	done := relay.Get(jobID)
	fmt.Printf("relay has the job %s with result %s\n", done.State, done.Result)

	// Output:
	// leased a job from "resize": cat.png 64x64 (attempt 1)
	// heartbeat: held
	// completed; duplicate: false
	// relay has the job succeeded with result cat-64.png
}
