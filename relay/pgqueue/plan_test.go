package pgqueue_test

import (
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/relay/pgqueue"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/queue/queuetest"
)

// TestRoundPlansOutliveTableGrowth: a round's statements are planned once
// per connection (generic plans), and those plans are first made while
// the table is nearly empty. After the table has grown a hundredfold on
// the same connections, a completion must still cost a few index pages,
// not a scan of the table, and the lease statement must not be planned
// again at every call. pg_stat_statements counts both.
func TestRoundPlansOutliveTableGrowth(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{Settings: map[string]string{
		"shared_preload_libraries":          "'pg_stat_statements'",
		"pg_stat_statements.track_planning": "on",
	}})
	dsn := srv.NewDB(t)
	// Two connections, made and prepared while the table is small.
	q := open(t, pgqueue.Options{DSN: dsn, MaxConns: 2})
	t.Cleanup(func() { _ = q.Close() })
	load := queuetest.Load{Workers: 8, PerLease: 1, Jobs: 300}
	if _, err := queuetest.RunLoad(bg, []queue.Backend{q}, load); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(bg, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(bg)
	if _, err := conn.Exec(bg, `CREATE EXTENSION pg_stat_statements`); err != nil {
		t.Fatal(err)
	}
	const grown = 60000
	if _, err := conn.Exec(bg, `INSERT INTO relay_jobs (id, queue, payload, state, max_attempts, lease_ms, run_after, created_at, updated_at, finished_at)
		SELECT 'old-' || i, 'default', '\x00', 'succeeded', 1, 1000, now(), now(), now(), now() FROM generate_series(1, $1) AS i`, grown); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(bg, `SELECT pg_stat_statements_reset()`); err != nil {
		t.Fatal(err)
	}
	load.Jobs = 600
	if _, err := queuetest.RunLoad(bg, []queue.Backend{q}, load); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.Query(bg, `SELECT query, calls, plans, rows, shared_blks_hit + shared_blks_read FROM pg_stat_statements WHERE calls > 0`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var sawComplete, sawLease bool
	for rows.Next() {
		var sql string
		var calls, plans, nrows, blocks int64
		if err := rows.Scan(&sql, &calls, &plans, &nrows, &blocks); err != nil {
			t.Fatal(err)
		}
		switch {
		case strings.HasPrefix(sql, "UPDATE relay_jobs j SET state = ") && strings.Contains(sql, "result = u.result"):
			sawComplete = true
			t.Logf("completion: %d calls, %d jobs, %d pages", calls, nrows, blocks)
			// An index path reads a handful of pages per job; a scan of the
			// grown table reads hundreds of pages per call.
			if perJob := float64(blocks) / float64(max(nrows, 1)); perJob > 40 {
				t.Errorf("a completion read %.0f pages per job (%d calls, %d jobs): its plan scans the table", perJob, calls, nrows)
			}
		case strings.HasPrefix(sql, "WITH req AS"):
			sawLease = true
			t.Logf("lease: %d calls, %d plans", calls, plans)
			if plans > calls/4 {
				t.Errorf("the lease statement was planned %d times in %d calls: its plan is not reused", plans, calls)
			}
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	if !sawComplete || !sawLease {
		t.Fatalf("pg_stat_statements saw completion %v, lease %v: the statements' text changed?", sawComplete, sawLease)
	}
}
