package kubetest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// recordingTB records Skip and Fatal instead of ending the test, so the
// decision between them can be checked.
type recordingTB struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recordingTB) Helper() {}
func (r *recordingTB) Skipf(format string, args ...any) {
	r.skipped, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recordingTB) Fatalf(format string, args ...any) {
	r.failed, r.msg = true, fmt.Sprintf(format, args...)
}
func (r *recordingTB) Fatal(args ...any) { r.failed, r.msg = true, fmt.Sprint(args...) }

// Missing binaries skip a test with the script to run, except under CI=true,
// where they fail it.
func TestMissingAssetsSkipOrFail(t *testing.T) {
	t.Setenv(AssetsEnv, t.TempDir())
	for _, tc := range []struct {
		ci       string
		wantSkip bool
	}{
		{ci: "", wantSkip: true},
		{ci: "false", wantSkip: true},
		{ci: "true", wantSkip: false},
	} {
		t.Setenv("CI", tc.ci)
		for name, start := range map[string]func(testing.TB) *Env{
			"Start":      Start,
			"Shared.Env": new(Shared).Env,
		} {
			r := &recordingTB{TB: t}
			if e := start(r); e != nil {
				t.Errorf("CI=%q %s: got an Env with no binaries", tc.ci, name)
			}
			if r.skipped != tc.wantSkip || r.failed == tc.wantSkip {
				t.Errorf("CI=%q %s: skipped=%v failed=%v, want skipped=%v", tc.ci, name, r.skipped, r.failed, tc.wantSkip)
			}
			if !strings.Contains(r.msg, BuildScript) {
				t.Errorf("CI=%q %s: message does not name %s: %s", tc.ci, name, BuildScript, r.msg)
			}
		}
	}
}

// startOrSkip is New with Start's skip-or-fail rule, for tests that stop the
// Env themselves.
func startOrSkip(t *testing.T) *Env {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	e, err := New(ctx)
	if err != nil {
		skipOrFail(t, err)
	}
	t.Cleanup(func() { _ = e.Stop() }) // a no-op after the test's own Stop
	return e
}

// alive reports whether pid is a process that has not exited (a zombie
// waiting for its parent to reap it counts as exited).
func alive(pid int) bool {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state ...; comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

func waitDead(t *testing.T, pids ...int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("pid %d still alive", pid)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// Stop ends both processes, apiserver first, and removes the temp dir.
func TestStopCleansUp(t *testing.T) {
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to watch the processes")
	}
	e := startOrSkip(t)
	apiPid, etcdPid := e.apiserver.proc.Pid, e.etcd.proc.Pid
	if !alive(apiPid) || !alive(etcdPid) {
		t.Fatalf("servers not running after New: apiserver %v, etcd %v", alive(apiPid), alive(etcdPid))
	}
	began := time.Now()
	if err := e.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("stopped in %v", time.Since(began).Round(time.Millisecond))
	waitDead(t, apiPid, etcdPid)
	if _, err := os.Stat(e.dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("temp dir %s still there after Stop (stat: %v)", e.dir, err)
	}
	if err := e.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

const childEnv = "KUBETEST_DIE_CHILD"

// A test process that dies without running its cleanups (SIGKILL, a panic,
// a -timeout) takes its servers with it.
func TestServersDieWithTestProcess(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		e, err := New(t.Context())
		if err != nil {
			fmt.Printf("error %v\n", err)
			os.Exit(3)
		}
		fmt.Printf("pids %d %d %s\n", e.apiserver.proc.Pid, e.etcd.proc.Pid, e.dir)
		time.Sleep(time.Minute) // until the parent kills us
		os.Exit(4)
	}
	if _, err := os.Stat("/proc/self/stat"); err != nil {
		t.Skip("needs /proc to watch the processes")
	}
	if _, err := findAssets(); err != nil {
		skipOrFail(t, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), startTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestServersDieWithTestProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the child test process: %v", err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()

	var apiPid, etcdPid int
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if _, err := fmt.Sscanf(sc.Text(), "pids %d %d %s", &apiPid, &etcdPid, &dir); err == nil {
			break
		}
		t.Logf("child: %s", sc.Text())
	}
	if apiPid == 0 {
		t.Fatalf("child did not report its servers (scan: %v)", sc.Err())
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) }) // the one thing a killed process leaves
	if !alive(apiPid) || !alive(etcdPid) {
		t.Fatal("child's servers not running")
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("killing the child: %v", err)
	}
	_ = cmd.Wait()
	waitDead(t, apiPid, etcdPid)
}
