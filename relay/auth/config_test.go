package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/keys"
)

func pin(t testing.TB, name string) keys.Pin {
	t.Helper()
	return testutil.Identity(t, name).Pin()
}

func TestParse(t *testing.T) {
	p1, p2 := pin(t, "a"), pin(t, "b")
	c, err := Parse("workers.yaml", []byte(fmt.Sprintf(`
workers:
  - name: bunny
    pins: [%s, %s]
    queues:
      default: [lease, heartbeat, complete, fail]
      reports: [lease, complete]
`, p1, p2)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []keys.Pin{p1, p2} {
		w, ok := c.Lookup(p)
		if !ok || w.Name != "bunny" {
			t.Fatalf("Lookup(%s) = %v %v", p, w, ok)
		}
	}
	w, _ := c.Lookup(p1)
	tests := []struct {
		queue string
		a     Action
		ok    bool
	}{
		{"default", Lease, true}, {"default", Fail, true}, {"reports", Complete, true},
		{"reports", Heartbeat, false}, {"other", Lease, false},
	}
	for _, tt := range tests {
		if got := w.May(tt.queue, tt.a); got != tt.ok {
			t.Errorf("May(%s, %s) = %v", tt.queue, tt.a, got)
		}
	}
	if got := w.QueuesFor(Lease); fmt.Sprint(got) != "[default reports]" {
		t.Errorf("QueuesFor(lease) = %v", got)
	}
	if _, ok := c.Lookup(pin(t, "c")); ok {
		t.Error("an unknown pin was found")
	}
}

func TestParseErrors(t *testing.T) {
	p1 := pin(t, "a")
	tests := []struct {
		name, yaml, want string
	}{
		{"empty", ``, "w.yaml: the file is empty"},
		{"unknown top field", "worker: []", `w.yaml:1: worker: unknown field (did you mean "workers"?); known fields of the top level: workers`},
		{"unknown worker field", fmt.Sprintf("workers:\n  - name: b\n    pin: [%s]\n", p1), `w.yaml:3: workers[0].pin: unknown field (did you mean "pins"?)`},
		{"no workers", "workers: []", "w.yaml: workers: no workers defined"},
		{"no name", fmt.Sprintf("workers:\n  - pins: [%s]\n    queues: {q: [lease]}\n", p1), "w.yaml:2: workers[0].name: required"},
		{"bad name", fmt.Sprintf("workers:\n  - name: a b\n    pins: [%s]\n    queues: {q: [lease]}\n", p1), "w.yaml:2: workers[0].name: worker name"},
		{"no pins", "workers:\n  - name: b\n    queues: {q: [lease]}\n", "workers[0].pins: required"},
		{"bad pin", "workers:\n  - name: b\n    pins: [sha256/nope]\n    queues: {q: [lease]}\n", "w.yaml:3: workers[0].pins[0]: parsing pin"},
		{"pin twice", fmt.Sprintf("workers:\n  - name: b\n    pins: [%s, %s]\n    queues: {q: [lease]}\n", p1, p1), "w.yaml:3: workers[0].pins[1]: " + p1.String() + " is listed twice"},
		{"no queues", fmt.Sprintf("workers:\n  - name: b\n    pins: [%s]\n", p1), "workers[0].queues: required"},
		{"bad action", fmt.Sprintf("workers:\n  - name: b\n    pins: [%s]\n    queues:\n      q: [lease, delete]\n", p1), `w.yaml:5: workers[0].queues.q[1]: unknown action "delete"`},
		{"near-miss action", fmt.Sprintf("workers:\n  - name: b\n    pins: [%s]\n    queues:\n      q: [lease, heartbaet]\n", p1), `unknown action "heartbaet" (did you mean "heartbeat"?)`},
		{"no actions", fmt.Sprintf("workers:\n  - name: b\n    pins: [%s]\n    queues: {q: []}\n", p1), "workers[0].queues.q: no actions"},
		{"bad queue", fmt.Sprintf("workers:\n  - name: b\n    pins: [%s]\n    queues: {'a b': [lease]}\n", p1), "queue name"},
		{"same name twice", fmt.Sprintf("workers:\n  - {name: b, pins: [%s], queues: {q: [lease]}}\n  - {name: b, pins: [%s], queues: {q: [lease]}}\n", p1, pin(t, "x")), `w.yaml:3: workers[1].name: "b" is also the name of the worker at w.yaml:2`},
		{"pin in two workers", fmt.Sprintf("workers:\n  - {name: a, pins: [%s], queues: {q: [lease]}}\n  - {name: b, pins: [%s], queues: {q: [lease]}}\n", p1, p1), "is also worker a's"},
		{"duplicate key", "workers: []\nworkers: []\n", "w.yaml:2: workers: appears twice"},
		{"workers not a list", "workers: 3\n", `w.yaml:1: workers: want a list, got "3"`},
		{"two documents", fmt.Sprintf("workers:\n  - {name: a, pins: [%s], queues: {q: [lease]}}\n---\nworkers: []\n", p1), "w.yaml:3: a second YAML document"},
		{"placeholder", "workers:\n  - {name: a, pins: [sha256/REPLACE+with+bunnys+pin+tunnel+keys+pin+AAA=], queues: {q: [lease]}}\n", `w.yaml:2: workers[0].pins[0]: "sha256/REPLACE+with+bunnys+pin+tunnel+keys+pin+AAA=" is a placeholder`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("w.yaml", []byte(tt.yaml))
			var es yamlcheck.Errors
			if !errors.As(err, &es) || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "invalid configuration") {
				t.Fatalf("err = %v, want the one format naming the file and mentioning %q", err, tt.want)
			}
		})
	}
}

// Every problem of every file at once, in the gateway's and bunny's format.
func TestParseEveryProblem(t *testing.T) {
	p1 := pin(t, "a")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a.yaml"), []byte(fmt.Sprintf("workers:\n  - name: a\n    pins: [%s, sha256/nope]\n    queues: {q: [lease, leese]}\n  - nmae: c\n", p1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "b.yaml"), []byte(fmt.Sprintf("workers:\n  - name: b\n    pins: [%s]\n    queues: {q: [lease]}\n", p1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(dir)
	var es yamlcheck.Errors
	if !errors.As(err, &es) {
		t.Fatalf("want Errors: %v", err)
	}
	var got []string
	for _, e := range es {
		got = append(got, fmt.Sprintf("%s:%d %s", filepath.Base(e.File), e.Line, e.Path))
	}
	want := "[a.yaml:3 workers[0].pins[1] a.yaml:4 workers[0].queues.q[1] a.yaml:5 workers[1].nmae a.yaml:5 workers[1].pins a.yaml:5 workers[1].queues b.yaml:3 workers[0].pins[0]]"
	if fmt.Sprint(got) != want {
		t.Fatalf("problems %v\nwant %s\n%v", got, want, err)
	}
	if !strings.HasPrefix(err.Error(), "invalid configuration (6 problems):\n  "+filepath.Join(dir, "a.yaml")+":3: workers[0].pins[1]: parsing pin") {
		t.Fatalf("format: %v", err)
	}
	if _, err := LoadTemplate(dir); err == nil {
		t.Fatal("LoadTemplate let a bad pin through")
	}
}

func writeWorkers(t *testing.T, path string, workers ...string) {
	t.Helper()
	body := "workers:\n"
	for _, w := range workers {
		body += "  - " + w + "\n"
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func worker(name string, pins ...keys.Pin) string {
	var ps []string
	for _, p := range pins {
		ps = append(ps, p.String())
	}
	return fmt.Sprintf("{name: %s, pins: [%s], queues: {default: [lease, heartbeat, complete, fail]}}", name, strings.Join(ps, ", "))
}

func TestLoadDirectory(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := pin(t, "a"), pin(t, "b")
	writeWorkers(t, filepath.Join(dir, "a.yaml"), worker("a", p1))
	writeWorkers(t, filepath.Join(dir, "b.yml"), worker("b", p2))
	if err := os.WriteFile(filepath.Join(dir, "README"), []byte("not yaml"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ".hidden.yaml"), []byte("garbage: ["), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Workers) != 2 {
		t.Fatalf("%d workers", len(c.Workers))
	}
	if w, ok := c.Lookup(p2); !ok || w.Name != "b" {
		t.Fatal("b not found")
	}
	writeWorkers(t, filepath.Join(dir, "c.yaml"), worker("a", pin(t, "c")))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "c.yaml") || !strings.Contains(err.Error(), "a.yaml") {
		t.Fatalf("a name in two files: %v", err)
	}
	if _, err := Load(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no .yaml or .yml file") {
		t.Fatalf("empty dir: %v", err)
	}
	if _, err := Load(filepath.Join(dir, "missing.yaml")); err == nil {
		t.Fatal("a missing file loaded")
	}
}

// The watcher follows kubelet's atomic ..data symlink swap, keeps the
// running configuration when a new one is bad, and reports removed pins.
func TestWatcherReloads(t *testing.T) {
	dir := t.TempDir()
	p1, p2 := pin(t, "old"), pin(t, "new")
	// The kubelet layout: dir/..2024_1/workers.yaml, dir/..data → ..2024_1,
	// dir/workers.yaml → ..data/workers.yaml.
	gen := 0
	publish := func(body string) {
		gen++
		d := filepath.Join(dir, fmt.Sprintf("..gen_%d", gen))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "workers.yaml"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		tmp := filepath.Join(dir, "..data_tmp")
		if err := os.Symlink(filepath.Base(d), tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	publish("workers:\n  - " + worker("bunny", p1) + "\n")
	if err := os.Symlink("..data/workers.yaml", filepath.Join(dir, "workers.yaml")); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var removed [][]keys.Pin
	ctx, cancel := context.WithCancel(context.Background())
	w, err := Watch(ctx, WatchOptions{Path: dir, Every: time.Hour, OnChange: func(c *Config, r []keys.Pin) {
		mu.Lock()
		removed = append(removed, r)
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-w.Done() })
	changes := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(removed)
	}
	// waitFor asks the watcher to look at the file between polls.
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testutil.Eventually(t, 5*time.Second, what, func() bool {
			if cond() {
				return true
			}
			w.Check()
			return false
		})
	}

	// Rotation, step 1: add the new pin beside the old.
	publish("workers:\n  - " + worker("bunny", p1, p2) + "\n")
	waitFor("both pins", func() bool { _, ok := w.Config().Lookup(p2); return ok })
	if _, ok := w.Config().Lookup(p1); !ok {
		t.Fatal("the old pin went away too early")
	}
	// A bad file changes nothing.
	publish("workers:\n  - {name: bunny, pins: [sha256/garbage]}\n")
	w.Check()
	time.Sleep(100 * time.Millisecond)
	w.Check()
	time.Sleep(50 * time.Millisecond)
	if _, ok := w.Config().Lookup(p1); !ok {
		t.Fatal("a bad file replaced the running configuration")
	}
	// Step 2: remove the old pin.
	publish("workers:\n  - " + worker("bunny", p2) + "\n")
	waitFor("the old pin to go", func() bool { _, ok := w.Config().Lookup(p1); return !ok })
	waitFor("OnChange", func() bool { return changes() == 2 })
	mu.Lock()
	defer mu.Unlock()
	if len(removed[0]) != 0 || len(removed[1]) != 1 || removed[1][0] != p1 {
		t.Fatalf("removed pins: %v", removed)
	}
}

func FuzzParse(f *testing.F) {
	p := pin(f, "seed")
	f.Add([]byte("workers:\n  - " + worker("bunny", p) + "\n"))
	f.Add([]byte("workers:\n  - name: b\n    pins: [" + p.String() + "]\n    queues:\n      q: [lease]\n"))
	f.Add([]byte("workers: [{name: &a x, pins: *a}]"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := Parse("f.yaml", in)
		if err != nil {
			if !strings.Contains(err.Error(), "f.yaml") {
				t.Fatalf("error does not name the file: %v", err)
			}
			return
		}
		if len(c.Workers) == 0 {
			t.Fatal("a configuration with no workers parsed")
		}
		for _, w := range c.Workers {
			if len(w.Pins) == 0 || len(w.Queues) == 0 {
				t.Fatalf("worker %q without pins or queues", w.Name)
			}
			for _, p := range w.Pins {
				if got, ok := c.Lookup(p); !ok || got != w {
					t.Fatalf("pin %s does not lead back to %s", p, w.Name)
				}
			}
		}
	})
}

// sparse makes a file of size bytes that takes no disk.
func sparse(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// A workers file past the cap is refused with its name and the cap, after
// reading no more than the cap: a 100 MB file once took 688 MB of RSS.
func TestLoadRefusesOversizeFiles(t *testing.T) {
	dir := t.TempDir()
	big := filepath.Join(dir, "workers.yaml")
	sparse(t, big, 100<<20)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Load(big)
	runtime.ReadMemStats(&after)
	if err == nil || !strings.Contains(err.Error(), big) || !strings.Contains(err.Error(), strconv.Itoa(MaxFileSize)) {
		t.Fatalf("err %v; want one naming %s and the cap", err, big)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*MaxFileSize {
		t.Errorf("allocated %d bytes reading a file past a %d-byte cap", alloc, MaxFileSize)
	}
	// Exactly the cap is read (and then judged as YAML).
	exact := filepath.Join(t.TempDir(), "w.yaml")
	sparse(t, exact, MaxFileSize)
	if _, err := Load(exact); err != nil && strings.Contains(err.Error(), "cap") {
		t.Fatalf("a file of exactly the cap: %v", err)
	}
	// A directory's files together are capped too.
	many := t.TempDir()
	for i := range MaxDirSize/MaxFileSize + 1 {
		sparse(t, filepath.Join(many, fmt.Sprintf("w%02d.yaml", i)), MaxFileSize)
	}
	if _, err := Load(many); err == nil || !strings.Contains(err.Error(), many) || !strings.Contains(err.Error(), strconv.Itoa(MaxDirSize)) {
		t.Fatalf("directory past its cap: %v", err)
	}
}
