package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/internal/procstat"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/client"
)

// BenchmarkScale is docs/relay.md's scale table: a real relay serve with
// a backlog of N 100-byte jobs (RELAY_SCALE_PAYLOAD bytes), killed (SIGKILL) and restarted, then
// drained by one worker with 64 slots. Per store and backlog it reports
// relay's RSS after the enqueue, the store's size, restart to ready, RSS
// after the restart, peak RSS while draining (sampled every 100ms; the
// restarted relay's VmHWM, which includes its start, is reported too) and
// the drain rate, and prints the table's row. It runs once whatever b.N
// is.
//
//	RELAY_SCALE_JOBS=20000,200000,1000000 RELAY_SCALE_STORES=bolt,postgres \
//	  go test -run XXX -bench Scale -benchtime 1x -timeout 2h ./relay/cmd/relay/
//
// The PostgreSQL store runs on a server internal/pgtest starts (skipped
// without its binaries), fsync on like the embedded store.
// RELAY_SCALE_DRAIN=0 stops after the restart (to measure a full relay).
func BenchmarkScale(b *testing.B) {
	jobs := []int{20_000}
	if v := os.Getenv("RELAY_SCALE_JOBS"); v != "" {
		jobs = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 1 {
				b.Fatalf("RELAY_SCALE_JOBS: %q is not a job count", f)
			}
			jobs = append(jobs, n)
		}
	}
	payload := 100
	if v := os.Getenv("RELAY_SCALE_PAYLOAD"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1<<20 {
			b.Fatalf("RELAY_SCALE_PAYLOAD: %q is not a payload size (1 to 1048576 bytes)", v)
		}
		payload = n
	}
	stores := []string{"bolt", "postgres"}
	if v := os.Getenv("RELAY_SCALE_STORES"); v != "" {
		stores = strings.Split(v, ",")
	}
	for _, st := range stores {
		for _, n := range jobs {
			b.Run(fmt.Sprintf("store=%s/jobs=%d", st, n), func(b *testing.B) {
				r := runScale(b, st, n, payload)
				b.ReportMetric(r.rssEnqueued, "MiB-rss-enqueued")
				b.ReportMetric(r.storeMiB, "MiB-store")
				b.ReportMetric(r.restart.Seconds(), "s-restart")
				b.ReportMetric(r.rssRestarted, "MiB-rss-restarted")
				b.ReportMetric(r.rssDrainPeak, "MiB-rss-drain-peak")
				b.ReportMetric(r.hwm, "MiB-hwm-restarted")
				b.ReportMetric(r.drainRate, "jobs/s-drain")
				b.ReportMetric(r.enqueueRate, "jobs/s-enqueue")
				fmt.Printf("| %s | %s | %.0f MiB | %.0f MiB | %.2f s | %.0f MiB | %.0f MiB | %s jobs/s |\n",
					st, thousands(n), r.rssEnqueued, r.storeMiB, r.restart.Seconds(), r.rssRestarted, r.rssDrainPeak, thousands(int(r.drainRate)))
			})
		}
	}
}

type scaleResult struct {
	rssEnqueued, storeMiB, rssRestarted, rssDrainPeak float64
	hwm                                               float64 // of the restarted relay, its load included
	restart                                           time.Duration
	drainRate, enqueueRate                            float64
}

func runScale(b *testing.B, storeName string, n, payload int) scaleResult {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Minute)
	defer cancel()
	s := newSetup(b)
	extra := []string{"--max-live-jobs", strconv.Itoa(n + 1000), "--max-live-bytes", strconv.Itoa((n + 1000) * (payload + 100))}
	var size func() float64
	switch storeName {
	case "bolt":
		size = func() float64 { return fileMiB(b, filepath.Join(s.dir, "relay.db")) }
	case "postgres":
		srv := pgtest.Start(b, pgtest.Options{Fsync: true})
		dsn := srv.NewDB(b)
		file := filepath.Join(s.dir, "store.dsn")
		if err := os.WriteFile(file, []byte(dsn+"\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		extra = append(extra, "--store-file", file)
		size = func() float64 { return pgMiB(ctx, b, dsn) }
	default:
		b.Fatalf("RELAY_SCALE_STORES: unknown store %q; want bolt or postgres", storeName)
	}
	var r scaleResult

	p := startRelay(b, s, extra...)
	start := time.Now()
	enqueue(ctx, b, p.api(s), n, payload)
	r.enqueueRate = float64(n) / time.Since(start).Seconds()
	r.rssEnqueued = procMiB(b, p, "VmRSS")
	r.storeMiB = size()

	p.kill()
	start = time.Now()
	p = startRelay(b, s, extra...)
	waitReady(ctx, b, p)
	r.restart = time.Since(start)
	r.rssRestarted = procMiB(b, p, "VmRSS")

	if os.Getenv("RELAY_SCALE_DRAIN") == "0" {
		p.kill() // for the RSS of a full relay only
		return r
	}
	start = time.Now()
	peak := drain(ctx, b, s, p, n)
	r.drainRate = float64(n) / time.Since(start).Seconds()
	r.rssDrainPeak = peak
	r.hwm = procMiB(b, p, "VmHWM")
	p.kill()
	return r
}

// enqueue adds n jobs of size bytes to queue default in batches of up to
// 1000 (and 4 MiB) from four producers, retrying what relay refuses as
// overloaded.
func enqueue(ctx context.Context, b *testing.B, c *api.Client, n, size int) {
	payload := bytes.Repeat([]byte("x"), size)
	per := min(1000, max(1, 4<<20/size))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				from := int(next.Add(int64(per))) - per
				if from >= n {
					return
				}
				batch := make([]api.JobRequest, min(per, n-from))
				for i := range batch {
					batch[i] = api.JobRequest{Queue: "default", Payload: payload}
				}
				for {
					_, err := c.EnqueueBatch(ctx, batch)
					var ae *api.Error
					if errors.As(err, &ae) && (ae.Status == http.StatusServiceUnavailable || ae.Status == http.StatusTooManyRequests) && ctx.Err() == nil {
						time.Sleep(50 * time.Millisecond)
						continue
					}
					if err != nil {
						errs <- err
						return
					}
					break
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		b.Fatalf("enqueueing: %v", err)
	}
}

// waitReady polls relay's /readyz until it answers 200.
func waitReady(ctx context.Context, b *testing.B, p *proc) {
	for ctx.Err() == nil {
		resp, err := http.Get(p.admin + "/readyz")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	b.Fatal("relay never became ready")
}

// drain completes n jobs as one worker with 64 slots: it leases as many
// jobs as it has free slots and completes each on its own goroutine. It
// returns relay's peak RSS, sampled every 100ms.
func drain(ctx context.Context, b *testing.B, s *setup, p *proc, n int) float64 {
	cl, err := p.dial(ctx, s, s.bunny)
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	const slots = 64
	free := make(chan struct{}, slots)
	for range slots {
		free <- struct{}{}
	}
	var done atomic.Int64
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			if v := uint64(procMiB(b, p, "VmRSS")); v > peak.Load() {
				peak.Store(v)
			}
		}
	}()
	var wg sync.WaitGroup
	var failed atomic.Pointer[error]
	for done.Load() < int64(n) && failed.Load() == nil && ctx.Err() == nil {
		<-free
		take := 1
	more:
		for take < slots {
			select {
			case <-free:
				take++
			default:
				break more
			}
		}
		jobs, err := cl.Lease(ctx, client.LeaseOptions{Max: take, Wait: time.Second})
		if err != nil {
			b.Fatalf("leasing: %v", err)
		}
		for range take - len(jobs) {
			free <- struct{}{}
		}
		for _, j := range jobs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { free <- struct{}{} }()
				if _, err := cl.Complete(ctx, j.Lease, []byte("ok")); err != nil {
					failed.Store(&err)
					return
				}
				done.Add(1)
			}()
		}
	}
	wg.Wait()
	close(stop)
	<-sampled
	if e := failed.Load(); e != nil {
		b.Fatalf("completing: %v", *e)
	}
	return float64(peak.Load())
}

// procMiB is a field of /proc/PID/status (VmRSS, VmHWM) of relay, in MiB.
func procMiB(b *testing.B, p *proc, field string) float64 {
	n, err := procstat.Bytes(p.cmd.Process.Pid, field)
	if err != nil {
		b.Fatal(err)
	}
	return float64(n) / (1 << 20)
}

func fileMiB(b *testing.B, path string) float64 {
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	return float64(fi.Size()) / (1 << 20)
}

// pgMiB is the size of the database relay uses.
func pgMiB(ctx context.Context, b *testing.B, dsn string) float64 {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	var size int64
	if err := conn.QueryRow(ctx, "SELECT pg_database_size(current_database())").Scan(&size); err != nil {
		b.Fatal(err)
	}
	return float64(size) / (1 << 20)
}

// thousands writes n with thousands separators.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
