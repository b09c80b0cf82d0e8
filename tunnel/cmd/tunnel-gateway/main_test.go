package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

// Bad input exits non-zero with one line naming what to fix, before
// anything starts. (It starting and carrying traffic is bench's
// TestFootprint, which runs this binary as a gateway and as a node.)
func TestBadInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("interface: {name: x, mtu: 5}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no config", nil, 2, "--config"},
		{"missing file", []string{"--config", filepath.Join(dir, "absent.yaml")}, 2, "absent.yaml"},
		{"invalid config", []string{"--config", bad}, 2, "mtu"},
		{"unknown flag", []string{"--confg", bad}, 2, "--confg"},
		{"version", []string{"--version"}, 0, "tunnel-gateway "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb testutil.Buffer
			code := run(tc.args, &out, &errb)
			all := out.String() + errb.String()
			if code != tc.code || !strings.Contains(all, tc.want) {
				t.Fatalf("run(%q) = %d, output %q: want %d and %q", tc.args, code, all, tc.code, tc.want)
			}
		})
	}
}
