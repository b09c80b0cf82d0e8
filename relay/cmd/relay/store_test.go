package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/pgtest"
)

// relay migrate and relay serve against PostgreSQL: the schema is made
// once, a newer one is refused in one line, and DSN mistakes are usage
// errors that never show the password.
func TestStoreCommands(t *testing.T) {
	srv := pgtest.Start(t, pgtest.Options{})
	dsn := srv.NewDB(t)
	t.Setenv("RELAY_STORE", dsn)
	code, out, errOut := runCLI(t, "migrate")
	if code != 0 || !strings.Contains(out, "from version 0 to 1") {
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
