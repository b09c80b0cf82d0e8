package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/tunnel/bench/node"
)

// proc is a running node, in a process or in this one.
type proc struct {
	ready  node.Ready
	stop   func()
	output func() string // what a node process printed, if any
	pid    int           // the node process, if it is one
}

// startProcessNode starts `exe args... ` as a node process. start, if
// set, starts the command (in a namespace, as another user); nil is
// cmd.Start.
func startProcessNode(ctx context.Context, exe []string, spec node.Spec, start func(*exec.Cmd) error) (*proc, error) {
	if start == nil {
		start = (*exec.Cmd).Start
	}
	cmd := exec.Command(exe[0], exe[1:]...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := start(cmd); err != nil {
		return nil, fmt.Errorf("starting node %v: %w", exe, err)
	}
	stop := func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	}
	b, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		stop()
		return nil, err
	}
	ch := make(chan error, 1)
	var ready node.Ready
	go func() {
		line, err := bufio.NewReader(stdout).ReadBytes('\n')
		if err == nil {
			err = json.Unmarshal(line, &ready)
		}
		ch <- err
	}()
	select {
	case err := <-ch:
		if err != nil {
			stop()
			return nil, fmt.Errorf("node %s/%s did not start: %w\n%s", spec.Impl, spec.Role, err, stderr.String())
		}
	case <-time.After(15 * time.Second):
		stop()
		return nil, errors.New("node did not report ready in 15 s")
	case <-ctx.Done():
		stop()
		return nil, ctx.Err()
	}
	return &proc{ready: ready, stop: stop, output: stderr.String, pid: cmd.Process.Pid}, nil
}

// lockedBuffer collects a node's standard error for when it fails.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.b) < 1<<20 {
		l.b = append(l.b, p...)
	}
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}

// GatewayBinary is the lean binary a gateway pod runs: the gateway and
// the benchmark's node, without the rest of the tunnel command.
const GatewayBinary = "tunnel-gateway"

// Commands says how to run gateways for a measurement.
type Commands struct {
	// Node runs a benchmark node (spec on standard input).
	Node []string
	// Gateway runs a gateway; the caller adds --config FILE.
	Gateway []string
	// Lean says the commands run GatewayBinary: the memory measured is
	// the memory a gateway pod has. Otherwise they run the whole tunnel
	// binary, whose larger image adds to every resident set.
	Lean bool
}

// CommandsFor finds the gateway commands for the tunnel binary exe:
// GatewayBinary beside it (as make build leaves them), else exe itself.
func CommandsFor(exe string) Commands {
	lean := filepath.Join(filepath.Dir(exe), GatewayBinary)
	if st, err := os.Stat(lean); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
		return Commands{Node: []string{lean, "bench-node"}, Gateway: []string{lean}, Lean: true}
	}
	return Commands{Node: []string{exe, "bench", "node"}, Gateway: []string{exe, "gateway"}}
}
