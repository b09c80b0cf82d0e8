package server_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/leaseloop"
	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// BenchmarkCycle measures jobs/s through enqueue → lease → complete on
// loopback: a real bbolt file (every acknowledged change fsync'd), real
// QUIC with real certificates, N workers each leasing one job at a time.
// It reports jobs/s and the p50/p99 latency of Lease calls that returned a
// job. Run with -benchtime=Nx to fix the number of jobs.
func BenchmarkCycle(b *testing.B) {
	for _, workers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("workers=%d", workers), func(b *testing.B) { benchCycle(b, workers) })
	}
}

func benchCycle(b *testing.B, workers int) {
	id := testutil.Identity(b, "bench")
	h := startRelay(b, relaytest.Options{}, relaytest.Worker{Name: "bench", IDs: []keys.Identity{id}, Queues: map[string]string{"default": relaytest.AllActions}})
	// 8 connections at most: the relay's default per key (more are refused).
	conns := make([]*client.Client, min(workers, 8))
	for i := range conns {
		conns[i] = h.Dial(id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	payload := make([]byte, 256)
	var done atomic.Int64
	total := int64(b.N)
	var mu sync.Mutex
	var lat []time.Duration

	b.ResetTimer()
	start := time.Now()
	go produce(ctx, b, h.Queue(), payload, nil, nil)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		c := conns[w%len(conns)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			var mine []time.Duration
			defer func() {
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			}()
			for done.Load() < total && ctx.Err() == nil {
				t0 := time.Now()
				jobs, err := c.Lease(ctx, client.LeaseOptions{Max: 1, Wait: 50 * time.Millisecond})
				if err != nil {
					b.Error(err)
					return
				}
				if len(jobs) == 0 {
					continue
				}
				mine = append(mine, time.Since(t0))
				if _, err := c.Complete(ctx, jobs[0].Lease, jobs[0].Payload[:8]); err != nil {
					b.Error(err)
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if done.Load() < total {
		b.Fatalf("%d of %d jobs completed", done.Load(), total)
	}
	slices.Sort(lat)
	pct := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(float64(len(lat))*p))].Microseconds())
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(pct(0.50), "lease-p50-µs")
	b.ReportMetric(pct(0.99), "lease-p99-µs")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkLeaseLoop measures jobs/s the way bunny works them: one QUIC
// connection, 64 slots, each Lease call for as many jobs as slots are
// free, completions that finish together sharing one call
// (internal/leaseloop), against a real bbolt file with every change
// fsync'd. A producer in process keeps a backlog of up to 1,256 jobs,
// enqueued 100 at a time. Run with -benchtime=Nx to fix the number of
// jobs.
func BenchmarkLeaseLoop(b *testing.B) {
	const slots = 64
	id := testutil.Identity(b, "bench")
	h := startRelay(b, relaytest.Options{}, relaytest.Worker{Name: "bench", IDs: []keys.Identity{id}, Queues: map[string]string{"default": relaytest.AllActions}})
	c := h.Dial(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	payload := make([]byte, 16)
	var queued, done atomic.Int64
	b.ResetTimer()
	start := time.Now()
	go produce(ctx, b, h.Queue(), payload, &queued, func() bool { return queued.Load()-done.Load() > 4*slots+1000 })
	err := leaseloop.Run(ctx, c, "default", slots, func(client.Job) {
		if done.Add(1) == int64(b.N) {
			cancel()
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	if done.Load() < int64(b.N) {
		b.Fatalf("%d of %d jobs completed", done.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(0, "ns/op")
}

// produce enqueues b.N jobs into queue default, 100 at a time, counting
// them in queued if set, and waiting while full says the backlog is full.
func produce(ctx context.Context, b *testing.B, q *queue.Queue, payload []byte, queued *atomic.Int64, full func() bool) {
	for n := 0; n < b.N && ctx.Err() == nil; {
		if full != nil && full() {
			time.Sleep(time.Millisecond)
			continue
		}
		batch := make([]queue.NewJob, min(100, b.N-n))
		for i := range batch {
			batch[i] = queue.NewJob{Queue: "default", Payload: payload}
		}
		if _, err := q.Enqueue(ctx, batch); err != nil {
			b.Error(err)
			return
		}
		n += len(batch)
		if queued != nil {
			queued.Add(int64(len(batch)))
		}
	}
}
