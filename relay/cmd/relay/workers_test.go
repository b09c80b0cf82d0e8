package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

func runRelay(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

// relay workers check: the file as relay serve reads it, every problem at
// once in the config files' one format, exit 2; placeholders only with
// --offline --allow-placeholders.
func TestWorkersCheck(t *testing.T) {
	dir := t.TempDir()
	pin := testutil.Identity(t, "bunny").Pin()
	good := filepath.Join(dir, "workers.yaml")
	if err := os.WriteFile(good, fmt.Appendf(nil, "workers:\n  - name: bunny\n    pins: [%s]\n    queues:\n      default: [lease, heartbeat, complete, fail]\n      reports: [lease]\n", pin), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runRelay("workers", "check", good)
	if code != 0 {
		t.Fatalf("good file: exit %d, %s", code, errOut)
	}
	for _, want := range []string{good + ": valid", "worker bunny (keys " + pin.String() + ")", "may lease, heartbeat, complete, fail on queue default", "may lease on queue reports", "refuses any other key"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// A directory, as relay serve's --workers takes it.
	if code, out, errOut := runRelay("workers", "check", dir); code != 0 || !strings.Contains(out, "worker bunny") {
		t.Fatalf("directory: exit %d, %s%s", code, out, errOut)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, fmt.Appendf(nil, "workers:\n  - name: bunny\n    pin: [%s]\n    queues: {default: [lease, heartbaet]}\n", pin), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runRelay("workers", "check", bad)
	if code != 2 || out != "" {
		t.Fatalf("bad file: exit %d, stdout %q", code, out)
	}
	for _, want := range []string{"invalid configuration (2 problems)", bad + `:3: workers[0].pin: unknown field (did you mean "pins"?)`, bad + `:4: workers[0].queues.default[1]: unknown action "heartbaet" (did you mean "heartbeat"?)`} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}

	shipped := filepath.Join("..", "..", "..", "manifests", "eks", "relay", "workers.yaml")
	for _, args := range [][]string{{shipped}, {"--offline", shipped}} {
		if code, _, errOut := runRelay(append([]string{"workers", "check"}, args...)...); code != 2 || !strings.Contains(errOut, "workers[0].pins[0]") || !strings.Contains(errOut, "is a placeholder") {
			t.Errorf("the unedited manifest, %v: exit %d, %s", args, code, errOut)
		}
	}
	if code, _, errOut := runRelay("workers", "check", "--allow-placeholders", shipped); code != 2 || !strings.Contains(errOut, "needs --offline") {
		t.Errorf("--allow-placeholders alone: exit %d, %s", code, errOut)
	}
	if code, out, errOut := runRelay("workers", "check", "--offline", "--allow-placeholders", shipped); code != 0 || !strings.Contains(out, "worker bunny") {
		t.Errorf("--offline --allow-placeholders: exit %d, %s", code, errOut)
	}
	if code, _, errOut := runRelay("workers", "check", filepath.Join(dir, "missing.yaml")); code != 2 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: exit %d, %s", code, errOut)
	}
}
