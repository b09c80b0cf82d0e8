package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/pgqueue"
)

// relay migrate and relay serve against PostgreSQL: the schema is made
// once, a newer one is refused in one line, and DSN mistakes are usage
// errors that never show the password.
func TestStoreCommands(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	t.Setenv("RELAY_STORE", dsn)
	code, out, errOut := runCLI(t, "migrate")
	if code != 0 || !strings.Contains(out, fmt.Sprintf("from version 0 to %d", pgqueue.SchemaVersion())) {
		t.Fatalf("migrate: exit %d, %q %q", code, out, errOut)
	}
	if code, out, _ = runCLI(t, "migrate"); code != 0 || !strings.Contains(out, "nothing to do") {
		t.Fatalf("migrate again: exit %d, %q", code, out)
	}

	s := newSetup(t)
	srv.Exec(t, "test1", "INSERT INTO relay_schema_migrations (version) VALUES (7)")
	code, _, errOut = runCLI(t, s.serveArgs()...)
	if lines := errorLines(errOut); code == 0 || len(lines) != 1 || !strings.Contains(lines[0], "newer than this relay") {
		t.Fatalf("serve on a newer schema: exit %d, %q", code, errOut)
	}

	const secret = "hunter2-but-longer"
	for _, tc := range []struct {
		name string
		env  string
		args []string
		code int
		want string
	}{
		{"bad DSN", "postgres://relay:" + secret + "@db:notaport/relay", nil, 2, "does not parse"},
		{"not a URL", "host=db password=" + secret, nil, 2, "want a postgres:// URL"},
		{"unreachable", "postgres://relay:" + secret + "@/relay?host=/nonexistent&connect_timeout=2", nil, 1, "unreachable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("RELAY_STORE", tc.env)
			code, _, errOut := runCLI(t, "migrate")
			if code != tc.code || !strings.Contains(errOut, tc.want) || strings.Contains(errOut, secret) {
				t.Fatalf("exit %d, %q; want exit %d naming %q, without the password", code, errOut, tc.code, tc.want)
			}
		})
	}

	// A DSN file readable by others is refused.
	file := filepath.Join(t.TempDir(), "dsn")
	if err := os.WriteFile(file, []byte(dsn), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RELAY_STORE", "")
	if code, _, errOut := runCLI(t, "migrate", "--store-file", file); code != 2 || !strings.Contains(errOut, "chmod 600") {
		t.Fatalf("world-readable --store-file: exit %d, %q", code, errOut)
	}
}

// errorLines are the lines of stderr that are not log records.
func errorLines(stderr string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(stderr), "\n") {
		if !strings.HasPrefix(l, "{") {
			out = append(out, l)
		}
	}
	return out
}

// A replica whose database goes away stays up, fails /readyz and refuses
// work with OVERLOADED, and is ready again once the database is back.
func TestReplicaWithoutDatabase(t *testing.T) {
	s := newSetup(t)
	srv, storeArgs := pgSetup(t, s, true) // fsync on: the crash below keeps the schema
	p := startRelay(t, s, storeArgs...)
	ready := func() int {
		resp, err := http.Get(p.admin + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := ready(); code != http.StatusOK {
		t.Fatalf("/readyz %d at start", code)
	}
	ctx := context.Background()
	cl, err := p.dial(ctx, s, s.bunny)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	srv.Stop(true)
	testutil.Eventually(t, 10*time.Second, "/readyz to fail", func() bool { return ready() == http.StatusServiceUnavailable })
	if _, err := cl.Lease(ctx, client.LeaseOptions{Max: 1}); !errors.Is(err, client.ErrOverloaded) {
		t.Fatalf("lease without a database: %v", err)
	}
	// relay status says so.
	code, out, errOut := runCLI(t, "status", "--admin", p.admin)
	if code != 0 || !strings.Contains(out, "store: postgres ") || !strings.Contains(out, "NOT READY: ") || !strings.Contains(out, "queues unreadable: ") {
		t.Fatalf("relay status without its database: exit %d: %s%s", code, out, errOut)
	}
	select {
	case <-p.exited:
		t.Fatalf("relay exited without its database: %v", p.waitErr)
	case <-time.After(2 * time.Second):
	}
	srv.Start()
	testutil.Eventually(t, 10*time.Second, "/readyz to pass again", func() bool { return ready() == http.StatusOK })
	if _, err := cl.Lease(ctx, client.LeaseOptions{Max: 1}); err != nil {
		t.Fatalf("lease once the database is back: %v", err)
	}
}
