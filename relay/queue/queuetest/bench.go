package queuetest

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Bench measures jobs/s through enqueue → lease → complete on backends
// that share one store (one per replica), with 64 jobs in flight: workers
// goroutines each leasing up to perLease jobs, spread over the replicas,
// while one producer enqueues in batches of 100. It reports jobs/s.
func Bench(b *testing.B, replicas []queue.Backend, workers, perLease int) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	payload := make([]byte, 100)
	total := int64(b.N)
	var done atomic.Int64
	b.ResetTimer()
	start := time.Now()
	go func() {
		for n := 0; n < b.N; n += 100 {
			batch := make([]queue.NewJob, min(100, b.N-n))
			for i := range batch {
				batch[i] = queue.NewJob{Queue: "default", Payload: payload}
			}
			if _, err := replicas[(n/100)%len(replicas)].Enqueue(ctx, batch); err != nil {
				b.Error(err)
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for w := range workers {
		q := replicas[w%len(replicas)]
		name := fmt.Sprintf("w%d", w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for done.Load() < total && ctx.Err() == nil {
				jobs, err := q.Lease(ctx, queue.LeaseRequest{Worker: name, Queues: []string{"default"}, Max: perLease, Wait: 50 * time.Millisecond})
				if err != nil {
					b.Error(err)
					return
				}
				var cw sync.WaitGroup
				for _, j := range jobs {
					cw.Add(1)
					go func() {
						defer cw.Done()
						if _, err := q.Complete(ctx, name, queue.Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}, j.Payload[:8]); err != nil {
							b.Error(err)
						}
					}()
				}
				cw.Wait()
				done.Add(int64(len(jobs)))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if done.Load() < total {
		b.Fatalf("%d of %d jobs completed", done.Load(), total)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	b.ReportMetric(0, "ns/op")
}
