package queuetest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
)

// Load is the shape of one run through enqueue → lease → complete on
// backends sharing one store (one per replica).
type Load struct {
	// Workers goroutines each lease up to PerLease jobs at a time, spread
	// over the replicas: Workers×PerLease jobs in flight.
	Workers, PerLease int
	// Batched settles a lease's jobs with one queue.CompleteBatch (what a
	// worker's completions sharing a call do); else each job completes on
	// its own, all at once.
	Batched bool
	// Jobs is how many jobs the run works.
	Jobs int
	// Rate, if positive, paces the producer at Rate jobs/s; else it
	// enqueues as fast as it can (saturation).
	Rate float64
}

// LoadResult is what a run measured.
type LoadResult struct {
	JobsPerSecond float64
	// P50 and P99 are enqueue-to-completion latencies (meaningful with a
	// paced producer; at saturation they measure the backlog).
	P50, P99 time.Duration
}

// RunLoad works l.Jobs jobs through replicas: one producer enqueues in
// batches of up to 100 (round robin over the replicas), the workers lease
// and complete them.
func RunLoad(ctx context.Context, replicas []queue.Backend, l Load) (LoadResult, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	payload := make([]byte, 100)
	var (
		done     atomic.Int64
		mu       sync.Mutex
		enqueued = map[string]time.Time{}
		lat      []time.Duration
		firstErr error
	)
	fail := func(err error) {
		mu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	start := time.Now()
	go func() {
		for n := 0; n < l.Jobs && ctx.Err() == nil; {
			size := min(100, l.Jobs-n)
			if l.Rate > 0 {
				due := int(l.Rate*time.Since(start).Seconds()) - n
				if due <= 0 {
					time.Sleep(2 * time.Millisecond)
					continue
				}
				size = min(size, due)
			}
			batch := make([]queue.NewJob, size)
			for i := range batch {
				batch[i] = queue.NewJob{Queue: "default", Payload: payload}
			}
			res, err := replicas[(n/100)%len(replicas)].Enqueue(ctx, batch)
			if err != nil {
				fail(fmt.Errorf("enqueueing: %w", err))
				return
			}
			now := time.Now()
			mu.Lock()
			for _, r := range res {
				enqueued[r.Job.ID] = now
			}
			mu.Unlock()
			n += size
		}
	}()
	finished := func(id string) {
		now := time.Now()
		mu.Lock()
		if t, ok := enqueued[id]; ok {
			lat = append(lat, now.Sub(t))
			delete(enqueued, id)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for w := range l.Workers {
		q := replicas[w%len(replicas)]
		name := fmt.Sprintf("w%d", w)
		wg.Go(func() {
			for done.Load() < int64(l.Jobs) && ctx.Err() == nil {
				jobs, err := q.Lease(ctx, queue.LeaseRequest{Worker: name, Queues: []string{"default"}, Max: l.PerLease, Wait: 50 * time.Millisecond})
				if err != nil {
					fail(fmt.Errorf("leasing: %w", err))
					return
				}
				if l.Batched && len(jobs) > 0 {
					cs := make([]queue.Completion, len(jobs))
					for i, j := range jobs {
						cs[i] = queue.Completion{Ref: queue.Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}, Result: j.Payload[:8]}
					}
					for i, r := range queue.CompleteBatch(ctx, q, name, cs) {
						if r.Err != nil {
							fail(fmt.Errorf("completing: %w", r.Err))
							return
						}
						finished(jobs[i].ID)
					}
				} else {
					var cw sync.WaitGroup
					for _, j := range jobs {
						cw.Go(func() {
							if _, err := q.Complete(ctx, name, queue.Ref{JobID: j.ID, Attempt: j.Attempt, Token: j.LeaseToken}, j.Payload[:8]); err != nil {
								fail(fmt.Errorf("completing: %w", err))
								return
							}
							finished(j.ID)
						})
					}
					cw.Wait()
				}
				done.Add(int64(len(jobs)))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return LoadResult{}, firstErr
	}
	if done.Load() < int64(l.Jobs) {
		return LoadResult{}, fmt.Errorf("%d of %d jobs completed: %w", done.Load(), l.Jobs, ctx.Err())
	}
	res := LoadResult{JobsPerSecond: float64(l.Jobs) / elapsed.Seconds()}
	if len(lat) > 0 {
		slices.Sort(lat)
		res.P50, res.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return res, nil
}

// Bench measures jobs/s through enqueue → lease → complete on backends
// that share one store (one per replica), with 64 jobs in flight: workers
// goroutines each leasing up to perLease jobs, spread over the replicas,
// while one producer enqueues in batches of 100. It reports jobs/s.
func Bench(b *testing.B, replicas []queue.Backend, workers, perLease int) {
	b.ResetTimer()
	res, err := RunLoad(context.Background(), replicas, Load{Workers: workers, PerLease: perLease, Jobs: b.N})
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.JobsPerSecond, "jobs/s")
	b.ReportMetric(0, "ns/op")
}
