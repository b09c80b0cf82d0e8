package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// Every flag of every command but --help and --version has its own
// environment variable, no variable means two things, and --help shows
// every default.
func TestEnvironmentVariables(t *testing.T) {
	if err := app().Check(func() any { return &commands{} }); err != nil {
		t.Fatal(err)
	}
	// The defaults the issue found missing are shown.
	var help bytes.Buffer
	run([]string{"serve", "--help"}, &help, io.Discard)
	run([]string{"jobs", "--help"}, &help, io.Discard)
	text := strings.Join(strings.Fields(help.String()), " ")
	for _, want := range []string{"(default: relay.db; $RELAY_DB)", "(default: :7443; $RELAY_LISTEN)", "(default: 127.0.0.1:8080; $RELAY_HTTP)", "(default: 127.0.0.1:9090; $RELAY_ADMIN)", "(default: https://127.0.0.1:8080; $RELAY_SERVER)", "--idle-timeout=15s"} {
		if !strings.Contains(text, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	// RELAY_VERSION=false used to print "dev" and exit 0 instead of serving.
	t.Setenv("RELAY_VERSION", "false")
	var out, errOut bytes.Buffer
	if code := run([]string{"serve"}, &out, &errOut); code != 2 || out.Len() != 0 || !strings.Contains(errOut.String(), "--identity-cert") {
		t.Errorf("RELAY_VERSION set: exit %d, stdout %q, stderr %s", code, out.String(), errOut.String())
	}
}
