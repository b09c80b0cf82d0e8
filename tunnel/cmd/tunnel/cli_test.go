package main

import (
	"path/filepath"
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
	// A variable named like --version no longer turns the gateway's start
	// into printing "dev" and exiting 0.
	t.Setenv("TUNNEL_VERSION", "anything")
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if code, out, errOut := runCLI(t, "gateway", "-c", missing); code != 2 || out != "" || !strings.Contains(errOut, "none.yaml") {
		t.Errorf("TUNNEL_VERSION set: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
	// status's --name is not the identity's --name.
	t.Setenv("TUNNEL_STATUS_NAME", "tun-eks")
	if code, _, errOut := runCLI(t, "keys", "identity", "--out-dir", t.TempDir()); code != 2 || !strings.Contains(errOut, "--name") {
		t.Errorf("keys identity took TUNNEL_STATUS_NAME: exit %d, %s", code, errOut)
	}
}
