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
	// A variable named like --version must not stop the worker starting.
	t.Setenv("BUNNY_VERSION", "1")
	missing := filepath.Join(t.TempDir(), "none.yaml")
	if code, out, errOut := runInProcess("run", "--config", missing); code != 2 || out != "" || !strings.Contains(errOut, "none.yaml") {
		t.Errorf("BUNNY_VERSION set: exit %d, stdout %q, stderr %s", code, out, errOut)
	}
}
