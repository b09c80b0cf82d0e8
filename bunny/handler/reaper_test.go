//go:build linux

package handler

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func newReaper(t *testing.T) *Reaper {
	t.Helper()
	r, err := NewReaper()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// gone waits for pid to be dead and reaped: no process, not even a zombie.
func gone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for procExists(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) is still there", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func procExists(pid int) bool {
	_, ok := procStat(pid)
	return ok
}

// The command sees only the variables it is given, not bunny's.
func TestExecEnvironmentIsAllowlisted(t *testing.T) {
	t.Setenv("BUNNY_TEST_SECRET", "s3cret")
	t.Setenv("BUNNY_TEST_PASSED", "yes")
	e := &Exec{Command: []string{"/usr/bin/env"}, Timeout: 5 * time.Second, MaxOutput: 1 << 20,
		PassEnv: []string{"BUNNY_TEST_PASSED", "BUNNY_TEST_UNSET"}, Env: []string{"EXTRA=1"}}
	out, err := e.Run(context.Background(), job(""))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	slices.Sort(got)
	want := []string{"BUNNY_ATTEMPT=2", "BUNNY_JOB_ID=job-1", "BUNNY_QUEUE=q", "BUNNY_TEST_PASSED=yes", "EXTRA=1"}
	if !slices.Equal(got, want) {
		t.Fatalf("environment %q, want %q", got, want)
	}
	// With nothing allowed, only the job's own three.
	e.PassEnv, e.Env = nil, nil
	out, _ = e.Run(context.Background(), job(""))
	if n := strings.Count(string(out), "\n"); n != 3 || strings.Contains(string(out), "s3cret") {
		t.Fatalf("default environment:\n%s", out)
	}
}

// A grandchild that left the process group with setsid dies with the job:
// at the timeout, and at a cancel even if it also cleared its environment
// and its parent exited.
func TestExecKillsDescendantsOutsideTheGroup(t *testing.T) {
	r := newReaper(t)
	dir := t.TempDir()
	t.Run("timeout", func(t *testing.T) {
		pidFile := filepath.Join(dir, "setsid.pid")
		e := &Exec{Command: []string{"/bin/sh", "-c", `setsid sleep 60 & echo $! > ` + pidFile + `; wait`},
			Timeout: 300 * time.Millisecond, MaxOutput: 100, Reaper: r}
		start := time.Now()
		if _, err := e.Run(context.Background(), job("")); !errors.Is(err, ErrTimeout) {
			t.Fatalf("err %v", err)
		}
		t.Logf("stopped after %s", time.Since(start))
		gone(t, "the setsid grandchild", readPid(t, pidFile))
	})
	t.Run("cancel, orphaned, environment cleared", func(t *testing.T) {
		pidFile := filepath.Join(dir, "orphan.pid")
		e := &Exec{Command: []string{"/bin/sh", "-c", `(setsid env -i sleep 61 & echo $! > ` + pidFile + `); sleep 60`},
			Timeout: time.Minute, MaxOutput: 100, Reaper: r}
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(300*time.Millisecond, cancel)
		if _, err := e.Run(ctx, job("")); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		gone(t, "the orphan", readPid(t, pidFile))
	})
	t.Run("clean exit", func(t *testing.T) {
		pidFile := filepath.Join(dir, "left.pid")
		e := &Exec{Command: []string{"/bin/sh", "-c", `setsid sleep 62 > /dev/null 2>&1 & echo $! > ` + pidFile + `; echo done`},
			Timeout: time.Minute, MaxOutput: 100, Reaper: r}
		if out, err := e.Run(context.Background(), job("")); err != nil || string(out) != "done\n" {
			t.Fatalf("out %q, err %v", out, err)
		}
		gone(t, "what the finished command left", readPid(t, pidFile))
	})
}

// Another job's orphans live until that job ends.
func TestReaperSparesOtherJobs(t *testing.T) {
	r := newReaper(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "a.pid")
	a := &Exec{Command: []string{"/bin/sh", "-c", `(setsid sleep 63 >/dev/null 2>&1 & echo $! > ` + pidFile + `); sleep 2`},
		Timeout: time.Minute, MaxOutput: 100, Reaper: r}
	done := make(chan error, 1)
	go func() {
		_, err := a.Run(context.Background(), Job{ID: "job-a", Queue: "q", Attempt: 1})
		done <- err
	}()
	deadline := time.Now().Add(2 * time.Second)
	var orphan int
	for orphan == 0 {
		if time.Now().After(deadline) {
			t.Fatal("job a did not start its orphan")
		}
		if b, err := readPidErr(pidFile); err == nil {
			orphan = b
		}
		time.Sleep(10 * time.Millisecond)
	}
	b := &Exec{Command: []string{"/bin/sh", "-c", `setsid sleep 64 & wait`}, Timeout: 200 * time.Millisecond, MaxOutput: 100, Reaper: r}
	if _, err := b.Run(context.Background(), Job{ID: "job-b", Queue: "q", Attempt: 1}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("job b: %v", err)
	}
	if !procExists(orphan) {
		t.Fatal("job b's sweep killed job a's orphan while job a ran")
	}
	if err := <-done; err != nil {
		t.Fatalf("job a: %v", err)
	}
	gone(t, "job a's orphan after job a ended", orphan)
}
