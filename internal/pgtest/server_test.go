package pgtest

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func query(t *testing.T, dsn string) (int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return 0, err
	}
	defer conn.Close(ctx)
	var n int
	err = conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n)
	return n, err
}

func TestServer(t *testing.T) {
	s := Start(t, Options{Fsync: true})
	a, b := s.NewDB(t), s.NewDB(t)
	if a == b {
		t.Fatalf("two databases share the DSN %s", a)
	}
	s.Exec(t, "test1", "CREATE TABLE t (x int)", "INSERT INTO t VALUES (1), (2)")
	if n, err := query(t, a); err != nil || n != 2 {
		t.Fatalf("count = %d, %v; want 2", n, err)
	}
	if _, err := query(t, b); err == nil {
		t.Fatal("the second database sees the first one's table")
	}

	// A crash restart keeps committed rows (fsync on) and cuts clients.
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	s.Restart(true)
	if err := conn.Ping(ctx); err == nil {
		t.Fatal("a connection survived an immediate restart")
	}
	if n, err := query(t, a); err != nil || n != 2 {
		t.Fatalf("after restart: count = %d, %v; want 2", n, err)
	}

	s.Stop(false)
	if _, err := query(t, a); err == nil {
		t.Fatal("connected to a stopped server")
	}
	s.Start()
	if n, err := query(t, a); err != nil || n != 2 {
		t.Fatalf("after stop and start: count = %d, %v; want 2", n, err)
	}
}
