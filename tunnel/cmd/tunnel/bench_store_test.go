package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// --store postgres takes its DSN from the environment or a file, and says
// what is missing or wrong without printing the DSN.
func TestBenchStoreFlags(t *testing.T) {
	dir := t.TempDir()
	relay := filepath.Join(dir, "relay")
	if err := os.WriteFile(relay, nil, 0o700); err != nil {
		t.Fatal(err)
	}
	notURL := filepath.Join(dir, "not-a-url.dsn")
	if err := os.WriteFile(notURL, []byte("host=/tmp password=hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		env  string
		want string
	}{
		{"no DSN", []string{"--jobs", "--relay", relay, "--store", "postgres"}, "", "TUNNEL_BENCH_DSN or --store-file"},
		{"not a URL", []string{"--jobs", "--relay", relay, "--store", "postgres", "--store-file", notURL}, "", "not a postgres:// URL"},
		{"not a URL in the environment", []string{"--jobs", "--relay", relay, "--store", "postgres"}, "host=/tmp password=hunter2", "not a postgres:// URL"},
		{"missing file", []string{"--jobs", "--relay", relay, "--store", "postgres", "--store-file", filepath.Join(dir, "none")}, "", "--store-file"},
		{"replicas out of range", []string{"--jobs", "--relay", relay, "--store", "postgres", "--replicas", "0"}, "postgres:///bench", "--replicas 0"},
		{"store without jobs", []string{"--store", "postgres"}, "", "need --jobs"},
		{"file without postgres", []string{"--jobs", "--relay", relay, "--store-file", notURL}, "", "--store-file needs --store postgres"},
		{"unknown store", []string{"--jobs", "--relay", relay, "--store", "mysql"}, "", "--store"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("TUNNEL_BENCH_DSN", tt.env)
			code, _, errOut := runCLI(t, append([]string{"bench"}, tt.args...)...)
			if code != 2 || !strings.Contains(errOut, tt.want) || strings.Contains(errOut, "hunter2") {
				t.Fatalf("exit %d, stderr %q; want 2 and %q, without the password", code, errOut, tt.want)
			}
		})
	}
}
