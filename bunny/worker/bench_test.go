package worker

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// BenchmarkJobs: jobs per second through a real relay on loopback (QUIC,
// every lease and result fsync'd), from enqueued to completed, with a
// trivial handler: a Go function (go) or a process per job (exec cat).
//
//	go test -run '^$' -bench BenchmarkJobs -benchtime 2000x ./bunny/worker/
func BenchmarkJobs(b *testing.B) {
	for _, bc := range []struct {
		kind string
		conc int
	}{{"go", 1}, {"go", 4}, {"go", 16}, {"go", 64}, {"exec", 4}} {
		b.Run(fmt.Sprintf("%s/concurrency=%d", bc.kind, bc.conc), func(b *testing.B) {
			var h handler.Handler = handler.Func(func(_ context.Context, j handler.Job) ([]byte, error) { return j.Payload, nil })
			if bc.kind == "exec" {
				h = &handler.Exec{Command: []string{"cat"}, Timeout: 10 * time.Second, MaxOutput: 1 << 20}
			}
			benchJobs(b, h, bc.conc)
		})
	}
}

func benchJobs(b *testing.B, h handler.Handler, conc int) {
	id := testutil.Identity(b, "bunny")
	r := relaytest.Start(b, relaytest.Options{Worker: id, Queues: []string{"q"}})
	w, err := New(Options{Addr: r.Addr, Identity: id, RelayPin: r.ID.Pin(), Handlers: map[string]handler.Handler{"q": h},
		Concurrency: conc, LeaseWait: time.Second, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, 256)
	for n := 0; n < b.N; n += 1000 {
		batch := make([]queue.NewJob, min(1000, b.N-n))
		for i := range batch {
			batch[i] = queue.NewJob{Queue: "q", Payload: payload}
		}
		r.Enqueue(batch...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(5 * time.Minute)
	for r.Metric("relay_completions_total", nil) < float64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("only %v of %d jobs completed in 5 minutes", r.Metric("relay_completions_total", nil), b.N)
		}
		time.Sleep(2 * time.Millisecond)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
	cancel()
	<-done
}
