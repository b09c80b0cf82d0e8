package main

import (
	"bytes"
	"io"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/cli"
)

// Every flag of every command but --help and --version has its own
// environment variable, and no variable means two things.
func TestEnvironmentVariables(t *testing.T) {
	k, err := app().New(&commands{}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := cli.CheckEnv(k.Model); err != nil {
		t.Fatal(err)
	}
	// RELAY_VERSION=false used to print "dev" and exit 0 instead of serving.
	t.Setenv("RELAY_VERSION", "false")
	var out, errOut bytes.Buffer
	if code := run([]string{"serve"}, &out, &errOut); code != 2 || out.Len() != 0 || !strings.Contains(errOut.String(), "--identity-cert") {
		t.Errorf("RELAY_VERSION set: exit %d, stdout %q, stderr %s", code, out.String(), errOut.String())
	}
}
