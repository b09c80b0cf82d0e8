package pgqueue_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// BenchmarkBackend: jobs/s with 64 jobs in flight (fsync on, as in
// production), the embedded store beside PostgreSQL on one and on three
// replicas sharing one database, in the same run; then p50/p99 of
// enqueue-to-completion with the producer paced at half that rate. For
// PostgreSQL it also reports write transactions (commits) and WAL bytes
// per job. Shapes: 64 workers leasing 1 job each, 8 leasing 8, and 8
// leasing 8 whose completions share one call (what bunny's slots do).
func BenchmarkBackend(b *testing.B) {
	srv := pgtest.Start(b, pgtest.Options{Fsync: true})
	shapes := []queuetest.Load{{Workers: 64, PerLease: 1}, {Workers: 8, PerLease: 8}, {Workers: 8, PerLease: 8, Batched: true}}
	stores := []struct {
		name     string
		replicas int
	}{{"embedded", 1}, {"postgres", 1}, {"postgres", 3}}
	for _, st := range stores {
		for _, shape := range shapes {
			name := fmt.Sprintf("store=%s/replicas=%d/workers=%d/lease=%d/batched=%t", st.name, st.replicas, shape.Workers, shape.PerLease, shape.Batched)
			b.Run(name, func(b *testing.B) {
				var qs []queue.Backend
				var dsn string
				if st.name == "embedded" {
					qs = append(qs, openEmbedded(b, queue.Options{}))
				} else {
					dsn = srv.NewDB(b)
					for range st.replicas {
						q := open(b, pgqueue.Options{DSN: dsn, MaxConns: 16})
						b.Cleanup(func() { _ = q.Close() })
						qs = append(qs, q)
					}
				}
				var before walMark
				if dsn != "" {
					before = mark(b, dsn)
				}
				load := shape
				load.Jobs = b.N
				b.ResetTimer()
				res, err := queuetest.RunLoad(bg, qs, load)
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(res.JobsPerSecond, "jobs/s")
				b.ReportMetric(0, "ns/op")
				if dsn != "" {
					after := mark(b, dsn)
					b.ReportMetric(float64(after.xid-before.xid)/float64(b.N), "commits/job")
					b.ReportMetric(float64(after.lsn-before.lsn)/float64(b.N), "WAL-B/job")
				}
				if b.N < 1000 {
					return // too short a run to pace another by
				}
				load.Rate = res.JobsPerSecond / 2
				load.Jobs = int(load.Rate * 2) // about 2s
				paced, err := queuetest.RunLoad(bg, qs, load)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(paced.P50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(paced.P99.Microseconds())/1000, "p99-ms")
			})
		}
	}
}

// walMark is where the database's transaction ids and WAL stood.
type walMark struct{ xid, lsn int64 }

// mark reads the next transaction id (one per write transaction, that is
// per commit) and the WAL position.
func mark(t testing.TB, dsn string) walMark {
	t.Helper()
	conn, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	var m walMark
	// Reading the xid does not consume one: pg_current_xact_id would.
	err = conn.QueryRow(bg, `SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint, (pg_current_wal_lsn() - '0/0'::pg_lsn)::bigint`).Scan(&m.xid, &m.lsn)
	if err != nil {
		t.Fatal(err)
	}
	return m
}
