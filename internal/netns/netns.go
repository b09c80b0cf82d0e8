package netns

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tunnel-dev/tunnel/internal/testutil"
)

// Require skips t unless the test can make namespaces: root, and the ip
// command present. The skip message names what is missing.
func Require(t testing.TB, commands ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces (CI runs as root)")
	}
	for _, c := range append([]string{"ip"}, commands...) {
		if _, err := exec.LookPath(c); err != nil {
			t.Skipf("needs %s on PATH (apt-get install the package that has it; .ci/run does)", c)
		}
	}
}

// Name makes a namespace name unique to this process, short enough for
// interface names derived from it.
func Name(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, os.Getpid()%100000)
}

// Create makes a network namespace with its loopback up, and deletes it
// when the test ends.
func Create(t testing.TB, name string) {
	t.Helper()
	if err := Add(name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := Del(name); err != nil {
			t.Log(err)
		}
	})
}

// Add makes a network namespace with its loopback up: Create for code
// that is not a test (the benchmark). Del removes it.
func Add(name string) error {
	if out, err := Output("ip", "netns", "add", name); err != nil {
		return fmt.Errorf("creating namespace %s: %v %s", name, err, out)
	}
	if out, err := Output("ip", "-n", name, "link", "set", "lo", "up"); err != nil {
		_ = Del(name)
		return fmt.Errorf("bringing up loopback in %s: %v %s", name, err, out)
	}
	return nil
}

// Del deletes a network namespace and the interfaces in it.
func Del(name string) error {
	if out, err := Output("ip", "netns", "del", name); err != nil {
		return fmt.Errorf("deleting namespace %s: %v %s", name, err, out)
	}
	return nil
}

// Veth joins namespaces a and b with a veth pair, addresses given in CIDR
// form ("192.168.77.1/24"). Deleting either namespace removes the pair.
func Veth(t testing.TB, a, ifA, addrA, b, ifB, addrB string) {
	t.Helper()
	if err := AddVeth(a, ifA, addrA, b, ifB, addrB); err != nil {
		t.Fatal(err)
	}
}

// AddVeth is Veth for code that is not a test.
func AddVeth(a, ifA, addrA, b, ifB, addrB string) error {
	for _, args := range [][]string{
		{"link", "add", ifA, "netns", a, "type", "veth", "peer", "name", ifB, "netns", b},
		{"-n", a, "addr", "add", addrA, "dev", ifA},
		{"-n", b, "addr", "add", addrB, "dev", ifB},
		{"-n", a, "link", "set", ifA, "up"},
		{"-n", b, "link", "set", ifB, "up"},
	} {
		if out, err := Output("ip", args...); err != nil {
			return fmt.Errorf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}

// MustRun runs a command to completion and fails the test if it fails.
func MustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := Output(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Output runs a command with a 30 s limit and returns its combined output.
func Output(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// In runs f on a thread that has entered namespace ns. Sockets f opens
// belong to ns for their whole life, whichever thread uses them later.
//
// The thread returns to its own namespace afterwards rather than exiting:
// a child started with Pdeathsig from a thread that exits would be killed.
func In(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening this thread's namespace: %w", err)
			return
		}
		defer home.Close()
		target, err := os.Open(filepath.Join("/var/run/netns", ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening namespace %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("entering namespace %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(home.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		} // else: the thread stays locked and exits with this goroutine.
		errc <- ferr
	}()
	return <-errc
}

// Proc is a process started inside a namespace.
type Proc struct {
	Cmd  *exec.Cmd
	Name string
	out  *testutil.Buffer
	done chan struct{}
	err  error
}

// Start runs a command inside namespace ns (with `ip netns exec`), in its
// own process group, and kills the group when the test ends. env adds to
// the environment.
func Start(t testing.TB, ns string, env []string, name string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	p := &Proc{Cmd: cmd, Name: filepath.Base(name), out: &testutil.Buffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s in %s: %v", name, ns, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("output of %s:\n%s", p.Name, p.Output())
		}
	})
	return p
}

// Output is what the process printed so far.
func (p *Proc) Output() string { return p.out.String() }

// Signal sends sig to the process group.
func (p *Proc) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.Cmd.Process.Pid, sig)
}

// Kill kills the process group and waits for the process, at most 5 s.
func (p *Proc) Kill() {
	_ = p.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
	}
}

// Wait waits for the process to exit, at most d, and returns its error.
func (p *Proc) Wait(d time.Duration) (exited bool, err error) {
	select {
	case <-p.done:
		return true, p.err
	case <-time.After(d):
		return false, nil
	}
}
