package handler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

// StderrTail is how much of stderr a failed command's error carries.
const StderrTail = 2048

// Exec runs a command per job: the payload on stdin, the result from
// stdout. A non-zero exit fails the job with stderr's tail. The command
// runs in a process group of its own, which is killed when the job times
// out, is cancelled, or writes more than MaxOutput bytes, and in any case
// when the job ends; with a Reaper, so are the descendants that left the
// group.
//
// The command's environment is BUNNY_JOB_ID, BUNNY_QUEUE, BUNNY_ATTEMPT,
// the variables of bunny's environment that PassEnv names, and Env:
// nothing else of bunny's environment reaches it.
type Exec struct {
	// Command is the program and its arguments.
	Command []string
	// Timeout bounds one run (required).
	Timeout time.Duration
	// MaxOutput caps stdout, in bytes (required).
	MaxOutput int
	// PassEnv names variables of bunny's environment the command gets
	// (those that are set).
	PassEnv []string
	// Env are further NAME=value pairs for the command.
	Env []string
	// Dir is the working directory; empty means bunny's.
	Dir string
	// Reaper, if set, kills what the command leaves behind outside its
	// process group when the job ends.
	Reaper *Reaper
}

// The variables every command gets.
const (
	envJobID   = "BUNNY_JOB_ID"
	envQueue   = "BUNNY_QUEUE"
	envAttempt = "BUNNY_ATTEMPT"
)

// environ is the command's whole environment; its first three entries
// mark the job's processes for the Reaper.
func (e *Exec) environ(job Job) []string {
	env := []string{envJobID + "=" + job.ID, envQueue + "=" + job.Queue, envAttempt + "=" + strconv.FormatUint(uint64(job.Attempt), 10)}
	for _, name := range e.PassEnv {
		if v, ok := os.LookupEnv(name); ok {
			env = append(env, name+"="+v)
		}
	}
	return append(env, e.Env...)
}

// Run runs the command for one job.
func (e *Exec) Run(ctx context.Context, job Job) ([]byte, error) {
	if len(e.Command) == 0 {
		return nil, errors.New("exec: no command")
	}
	ctx, cancel := context.WithTimeoutCause(ctx, e.Timeout, ErrTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.Command[0], e.Command[1:]...)
	cmd.Dir = e.Dir
	cmd.Env = e.environ(job)
	cmd.Stdin = bytes.NewReader(job.Payload)
	setProcessGroup(cmd)
	// What left the group may hold stdout open: a stop sweeps it up now
	// rather than wait out WaitDelay.
	stop := func() error {
		err := killGroup(cmd)
		if e.Reaper != nil {
			e.Reaper.sweep(cmd.Process.Pid, cmd.Env[:3])
		}
		return err
	}
	cmd.Cancel = stop
	// Grandchildren that keep stdout or stderr open must not hold Run up
	// once the group has been killed.
	cmd.WaitDelay = 2 * time.Second

	var mu sync.Mutex // the output cap kills from the copying goroutine
	killed := false
	out := &capped{limit: e.MaxOutput, onOver: func() {
		mu.Lock()
		defer mu.Unlock()
		if cmd.Process != nil && !killed {
			killed = true
			_ = stop()
		}
	}}
	stderr := &tail{n: StderrTail}
	cmd.Stdout, cmd.Stderr = out, stderr
	start := time.Now()
	err := e.Reaper.start(cmd)
	if err == nil {
		err = cmd.Wait()
		e.Reaper.waited(cmd.Process.Pid)
	}
	// Whatever happened, nothing of the job's process group may outlive
	// it when it was stopped; on a clean exit, leftovers are its business
	// only until the job ends, so kill them too, and what left the group.
	if cmd.Process != nil {
		_ = stop()
	}
	switch {
	case out.over:
		return nil, fmt.Errorf("%s: stdout %w; process group killed%s", e.name(), overErr(e.MaxOutput), stderrSuffix(stderr))
	case context.Cause(ctx) == ErrTimeout:
		return nil, fmt.Errorf("%s: %w after %s; process group killed%s", e.name(), ErrTimeout, e.Timeout, stderrSuffix(stderr))
	case ctx.Err() != nil:
		return nil, fmt.Errorf("%s: stopped after %s (%w); process group killed", e.name(), time.Since(start).Round(time.Millisecond), context.Cause(ctx))
	case err != nil:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return nil, fmt.Errorf("%s: %s%s", e.name(), ee.ProcessState.String(), stderrSuffix(stderr))
		}
		return nil, fmt.Errorf("%s: %w", e.name(), err)
	}
	return out.buf, nil
}

func (e *Exec) name() string { return "exec " + strconv.Quote(e.Command[0]) }

func stderrSuffix(t *tail) string {
	s := strings.TrimSpace(t.String())
	if s == "" {
		return ""
	}
	return "; stderr: " + s
}
