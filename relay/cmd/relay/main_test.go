package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/producers"
)

// TestMain lets the test binary be relay itself: with RELAY_TEST_MAIN set
// it runs the command line instead of the tests, so the crash test can
// run relay as a real process and kill it.
func TestMain(m *testing.M) {
	if os.Getenv("RELAY_TEST_MAIN") == "1" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// setup is what relay serve reads: identities and a workers file.
type setup struct {
	dir      string
	relayPin keys.Pin
	bunny    keys.Identity
	stranger keys.Identity
	// token is producer "admin"'s (every action on every queue);
	// producerA (a client certificate) may only enqueue to and read a.
	token     string
	producerA keys.Identity
}

func newSetup(t testing.TB) *setup {
	t.Helper()
	dir := t.TempDir()
	s := &setup{dir: dir}
	var err error
	if s.relayPin, err = keys.WriteIdentity(filepath.Join(dir, "relay"), "relay", false); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bunny", "stranger"} {
		if _, err := keys.WriteIdentity(filepath.Join(dir, name), name, false); err != nil {
			t.Fatal(err)
		}
	}
	if s.bunny, err = keys.LoadIdentity(filepath.Join(dir, "bunny", keys.IdentityCertFile), filepath.Join(dir, "bunny", keys.IdentityKeyFile)); err != nil {
		t.Fatal(err)
	}
	if s.stranger, err = keys.LoadIdentity(filepath.Join(dir, "stranger", keys.IdentityCertFile), filepath.Join(dir, "stranger", keys.IdentityKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.WriteIdentity(filepath.Join(dir, "producer-a"), "producer-a", false); err != nil {
		t.Fatal(err)
	}
	if s.producerA, err = keys.LoadIdentity(filepath.Join(dir, "producer-a", keys.IdentityCertFile), filepath.Join(dir, "producer-a", keys.IdentityKeyFile)); err != nil {
		t.Fatal(err)
	}
	tok, hash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	s.token = tok
	s.writeProducers(t, producers.Entry("admin", nil, []producers.TokenHash{hash}, map[string][]producers.Action{producers.AnyQueue: producers.Actions()}),
		producers.Entry("producer-a", []keys.Pin{s.producerA.Pin()}, nil, map[string][]producers.Action{"a": {producers.Enqueue, producers.Read}}))
	s.writeWorkers(t, fmt.Sprintf("workers:\n  - name: bunny\n    pins: [%s]\n    queues:\n      default: [lease, heartbeat, complete, fail]\n", s.bunny.Pin()))
	return s
}

func (s *setup) writeWorkers(t testing.TB, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "workers.yaml"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *setup) writeProducers(t testing.TB, entries ...string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(s.dir, "producers.yaml"), []byte("producers:\n"+strings.Join(entries, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

func (s *setup) serveArgs(extra ...string) []string {
	return append([]string{"serve",
		"--db", filepath.Join(s.dir, "relay.db"),
		"--listen", "127.0.0.1:0",
		"--http", "127.0.0.1:0",
		"--admin", "127.0.0.1:0",
		"--producers", filepath.Join(s.dir, "producers.yaml"),
		"--identity-cert", filepath.Join(s.dir, "relay", keys.IdentityCertFile),
		"--identity-key", filepath.Join(s.dir, "relay", keys.IdentityKeyFile),
		"--workers", filepath.Join(s.dir, "workers.yaml"),
		"--log-format", "json",
		"--backoff-base", "10ms", "--backoff-max", "50ms",
		"--drain-timeout", "2s",
	}, extra...)
}

// proc is relay running as a child process.
type proc struct {
	cmd     *exec.Cmd
	quic    string
	http    string // the producer API, https://…
	admin   string // /metrics, /healthz, /readyz, http://…
	exited  chan struct{}
	logs    testutil.Buffer
	waitErr error
}

// startRelay runs `relay serve` and waits until it listens.
func startRelay(t testing.TB, s *setup, extra ...string) *proc {
	t.Helper()
	return startRelayIn(t, "", s.serveArgs(extra...))
}

// startRelayIn runs relay with args in the working directory dir ("" is
// the test's).
func startRelayIn(t testing.TB, dir string, args []string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "RELAY_TEST_MAIN=1", "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	addrs := make(chan [3]string, 1)
	go func() {
		var quicAddr, httpAddr, adminAddr string
		sent := false
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			fmt.Fprintf(&p.logs, "%s\n", line)
			var rec struct{ Msg, Addr string }
			if json.Unmarshal(line, &rec) != nil {
				continue
			}
			switch rec.Msg {
			case "serving workers over QUIC":
				quicAddr = rec.Addr
			case "producer API listening":
				httpAddr = rec.Addr
			case "admin server listening":
				adminAddr = rec.Addr
			}
			if !sent && quicAddr != "" && httpAddr != "" && adminAddr != "" {
				addrs <- [3]string{quicAddr, httpAddr, adminAddr}
				sent = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("relay's log:\n%s", p.log())
		}
	})
	select {
	case a := <-addrs:
		p.quic, p.http, p.admin = a[0], "https://"+a[1], "http://"+a[2]
	case <-p.exited:
		t.Fatalf("relay exited at start (%v):\n%s", p.waitErr, p.log())
	case <-time.After(30 * time.Second):
		t.Fatalf("relay did not start within 30s:\n%s", p.log())
	}
	return p
}

func (p *proc) log() string {
	return p.logs.String()
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *proc) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// api is a client of p's API as producer admin.
func (p *proc) api(s *setup) *api.Client {
	return &api.Client{BaseURL: p.http, HTTP: api.HTTPClient(api.ClientTLS(s.relayPin, nil), 30*time.Second), Token: s.token}
}

func (p *proc) dial(ctx context.Context, s *setup, id keys.Identity) (*client.Client, error) {
	return client.Dial(ctx, client.Options{Addr: p.quic, Identity: id, RelayPin: s.relayPin})
}

// ledger records what relay acknowledged.
type ledger struct {
	mu      sync.Mutex
	jobs    map[string]string // id → payload
	results map[string]string // id → result
}

func (l *ledger) job(id, payload string) {
	l.mu.Lock()
	l.jobs[id] = payload
	l.mu.Unlock()
}

func (l *ledger) result(id, result string) {
	l.mu.Lock()
	l.results[id] = result
	l.mu.Unlock()
}

// produce enqueues until ctx ends or relay stops answering.
func produce(ctx context.Context, c *api.Client, l *ledger, name string) {
	for i := 0; ctx.Err() == nil; i++ {
		payload := fmt.Sprintf("%s-%d-%d", name, time.Now().UnixNano(), i)
		if i%4 == 3 {
			reqs := make([]api.JobRequest, 5)
			for k := range reqs {
				reqs[k] = api.JobRequest{Queue: "default", PayloadText: fmt.Sprintf("%s.%d", payload, k), LeaseDuration: "1s"}
			}
			jobs, err := c.EnqueueBatch(ctx, reqs)
			if err != nil {
				return
			}
			for k, j := range jobs {
				l.job(j.ID, reqs[k].PayloadText)
			}
			continue
		}
		j, err := c.Enqueue(ctx, api.JobRequest{Queue: "default", PayloadText: payload, LeaseDuration: "1s"})
		if err != nil {
			return
		}
		l.job(j.ID, payload)
	}
}

// work leases and completes until ctx ends or the connection is lost. The
// result is derived from the payload, so it can be checked.
func work(ctx context.Context, c *client.Client, l *ledger) {
	for ctx.Err() == nil {
		jobs, err := c.Lease(ctx, client.LeaseOptions{Max: 4, Wait: 200 * time.Millisecond})
		if err != nil {
			return
		}
		for _, j := range jobs {
			res := "done:" + string(j.Payload)
			if _, err := c.Complete(ctx, j.Lease, []byte(res)); err != nil {
				if errors.Is(err, client.ErrLeaseLost) {
					continue
				}
				return
			}
			l.result(j.ID, res)
		}
	}
}

// relay killed with SIGKILL in the middle of enqueues, leases and
// completions loses no acknowledged job and no acknowledged result, and
// redelivers what was leased when it died.
func TestCrashSafety(t *testing.T) {
	s := newSetup(t)
	l := &ledger{jobs: map[string]string{}, results: map[string]string{}}
	const rounds = 4
	replays := 0 // restarts that found commits in the journal the file did not hold
	for round := 0; round < rounds; round++ {
		p := startRelay(t, s)
		if round > 0 && strings.Contains(p.log(), "store replayed its journal") {
			replays++
		}
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		for i := 0; i < 2; i++ {
			wg.Add(1)
			go func() { defer wg.Done(); produce(ctx, p.api(s), l, fmt.Sprintf("r%dp%d", round, i)) }()
		}
		for i := 0; i < 2; i++ {
			c, err := p.dial(ctx, s, s.bunny)
			if err != nil {
				t.Fatalf("round %d: dial: %v", round, err)
			}
			wg.Add(1)
			go func() { defer wg.Done(); defer c.Close(); work(ctx, c, l) }()
		}
		// Kill it mid-stream, at a different moment each round.
		time.Sleep(time.Duration(400+150*round) * time.Millisecond)
		p.kill()
		// Calls in flight fail; give the goroutines a bounded time to see
		// it, then stop them.
		time.AfterFunc(2*time.Second, cancel)
		wg.Wait()
		cancel()
		l.mu.Lock()
		t.Logf("round %d: killed; %d jobs and %d results acknowledged so far", round, len(l.jobs), len(l.results))
		l.mu.Unlock()
	}

	p := startRelay(t, s)
	if strings.Contains(p.log(), "store replayed its journal") {
		replays++
	}
	if replays == 0 {
		t.Fatalf("no restart after a kill replayed the store's journal: the kills did not test it")
	}
	t.Logf("%d of %d restarts replayed the journal", replays, rounds)
	ctx := context.Background()
	ac := p.api(s)
	l.mu.Lock()
	defer l.mu.Unlock()
	ackedJobs, ackedResults := len(l.jobs), len(l.results)
	if len(l.jobs) == 0 || len(l.results) == 0 {
		t.Fatalf("the test acknowledged %d jobs and %d results; it proves nothing", len(l.jobs), len(l.results))
	}
	for id, payload := range l.jobs {
		j, err := ac.Get(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged job %s: %v", id, err)
		}
		if string(j.Payload) != payload {
			t.Fatalf("job %s: payload %q, acknowledged %q", id, j.Payload, payload)
		}
	}
	for id, res := range l.results {
		j, err := ac.Get(ctx, id)
		if err != nil {
			t.Fatalf("acknowledged result of %s: %v", id, err)
		}
		if j.State != "succeeded" || string(j.Result) != res {
			t.Fatalf("job %s: %s with result %q; its result %q was acknowledged", id, j.State, j.Result, res)
		}
	}

	// Every job, including those leased when relay died, is delivered and
	// completes after the restart.
	c, err := p.dial(ctx, s, s.bunny)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(60 * time.Second)
	redelivered := 0
	for {
		// A job whose Complete was cut off by a kill may have succeeded
		// unacknowledged: relay's word counts, if the result is right.
		pending := 0
		for id, payload := range l.jobs {
			if _, ok := l.results[id]; ok {
				continue
			}
			j, err := ac.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if j.State == "succeeded" {
				if string(j.Result) != "done:"+payload {
					t.Fatalf("job %s succeeded with %q", id, j.Result)
				}
				l.results[id] = string(j.Result)
				continue
			}
			pending++
		}
		if pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged jobs still not completed 60s after the last restart", pending)
		}
		lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		jobs, err := c.Lease(lctx, client.LeaseOptions{Max: 64, Wait: time.Second})
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range jobs {
			if j.Lease.Attempt > 1 {
				redelivered++
			}
			res := "done:" + string(j.Payload)
			if _, err := c.Complete(ctx, j.Lease, []byte(res)); err != nil {
				t.Fatal(err)
			}
			l.results[j.ID] = res
		}
	}
	for id, payload := range l.jobs {
		j, err := ac.Get(ctx, id)
		if err != nil || j.State != "succeeded" || string(j.Result) != "done:"+payload {
			t.Fatalf("job %s at the end: %+v %v", id, j, err)
		}
	}
	t.Logf("%d kills; all %d acknowledged jobs present and all %d acknowledged results kept; after the last restart %d jobs were delivered again (attempt > 1) and every job completed",
		rounds, ackedJobs, ackedResults, redelivered)
}

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

// The jobs commands against a running relay, end to end.
func TestJobsCommands(t *testing.T) {
	s, p, srv := startForCLI(t)

	code, out, errOut := runCLI(t, "jobs", srv, "submit", "-q", "default", "-p", "hello", "-k", "key-1", "--max-attempts", "1")
	if code != 0 {
		t.Fatalf("submit: exit %d: %s", code, errOut)
	}
	var j api.Job
	if err := json.Unmarshal([]byte(out), &j); err != nil || j.ID == "" || string(j.Payload) != "hello" || j.MaxAttempts != 1 {
		t.Fatalf("submit printed %q (%v)", out, err)
	}
	code, out, _ = runCLI(t, "jobs", srv, "submit", "-q", "default", "-p", "other", "-k", "key-1")
	var again api.Job
	if code != 0 || json.Unmarshal([]byte(out), &again) != nil || again.ID != j.ID || !again.Existing {
		t.Fatalf("submit with the same key: exit %d, %q", code, out)
	}
	payloadFile := filepath.Join(s.dir, "payload.bin")
	if err := os.WriteFile(payloadFile, []byte{0, 1, 2, 255}, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = runCLI(t, "jobs", srv, "submit", "-q", "default", "-f", payloadFile, "--run-after", "1h")
	var later api.Job
	if code != 0 || json.Unmarshal([]byte(out), &later) != nil || !bytes.Equal(later.Payload, []byte{0, 1, 2, 255}) || time.Until(later.RunAfter) < 59*time.Minute {
		t.Fatalf("submit from a file: exit %d, %q %s", code, out, errOut)
	}

	// A worker fails the first job for good: it is dead after 1 attempt.
	ctx := context.Background()
	c, err := p.dial(ctx, s, s.bunny)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	leased, err := c.Lease(ctx, client.LeaseOptions{Max: 10})
	if err != nil || len(leased) != 1 || leased[0].ID != j.ID {
		t.Fatalf("lease: %+v %v", leased, err)
	}
	if res, err := c.Fail(ctx, leased[0].Lease, "boom", client.FailOptions{}); err != nil || res.State != "dead" {
		t.Fatalf("fail: %+v %v", res, err)
	}

	code, out, _ = runCLI(t, "jobs", srv, "list", "--state", "dead")
	if code != 0 || !strings.Contains(out, j.ID) || !strings.Contains(out, "boom") || strings.Contains(out, later.ID) {
		t.Fatalf("list dead: exit %d\n%s", code, out)
	}
	code, out, _ = runCLI(t, "jobs", srv, "list", "--json", "--all", "--limit", "1")
	var page api.ListResponse
	if code != 0 || json.Unmarshal([]byte(out), &page) != nil || len(page.Jobs) != 2 {
		t.Fatalf("list --all: exit %d %q", code, out)
	}
	code, out, _ = runCLI(t, "jobs", srv, "retry", j.ID)
	if code != 0 || !strings.Contains(out, `"state": "queued"`) {
		t.Fatalf("retry: exit %d %q", code, out)
	}
	leased, err = c.Lease(ctx, client.LeaseOptions{})
	if err != nil || len(leased) != 1 {
		t.Fatal(leased, err)
	}
	if _, err := c.Complete(ctx, leased[0].Lease, []byte("the result\n")); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "jobs", srv, "get", j.ID, "--result")
	if code != 0 || out != "the result\n" {
		t.Fatalf("get --result: exit %d %q", code, out)
	}
	code, out, _ = runCLI(t, "jobs", srv, "cancel", later.ID)
	if code != 0 || !strings.Contains(out, `"state": "cancelled"`) {
		t.Fatalf("cancel: exit %d %q", code, out)
	}
	code, _, errOut = runCLI(t, "jobs", srv, "cancel", j.ID)
	if code != 1 || !strings.Contains(errOut, "already succeeded") {
		t.Fatalf("cancel of a finished job: exit %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "jobs", srv, "get", "nope")
	if code != 1 || !strings.Contains(errOut, "404") {
		t.Fatalf("get of an unknown job: exit %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "jobs", srv, "submit", "-q", "no spaces", "-p", "x")
	if code != 2 || !strings.Contains(errOut, "queue name") {
		t.Fatalf("submit to a bad queue name: exit %d %q", code, errOut)
	}
	code, _, errOut = runCLI(t, "jobs", srv, "submit", "-q", "q", "-p", "x", "--run-after", "someday")
	if code != 2 || !strings.Contains(errOut, "--run-after") {
		t.Fatalf("bad --run-after: exit %d %q", code, errOut)
	}

	// An identity outside the workers file is refused at Dial.
	if _, err := p.dial(ctx, s, s.stranger); !errors.Is(err, client.ErrUnauthorized) {
		t.Fatalf("a stranger's dial: %v", err)
	}

	// No payload is refused before anything is sent; -p '' is an empty one.
	code, _, errOut = runCLI(t, "jobs", srv, "submit", "-q", "empty")
	if code != 2 || !strings.Contains(errOut, "no payload: give it with -p TEXT, -f FILE or -f -") {
		t.Fatalf("submit without a payload: exit %d %q", code, errOut)
	}
	if resp, err := p.api(s).List(ctx, api.ListOptions{Queue: "empty"}); err != nil || len(resp.Jobs) != 0 {
		t.Fatalf("a refused submit enqueued %+v (%v)", resp.Jobs, err)
	}
	code, out, errOut = runCLI(t, "jobs", srv, "submit", "-q", "empty", "-p", "")
	var empty api.Job
	if code != 0 || json.Unmarshal([]byte(out), &empty) != nil || empty.ID == "" || len(empty.Payload) != 0 {
		t.Fatalf("submit -p '': exit %d %q %s", code, out, errOut)
	}
	// --idempotency-key is -k's long name; RELAY_SUBMIT_IDEMPOTENCY_KEY sets it.
	t.Setenv("RELAY_SUBMIT_IDEMPOTENCY_KEY", "key-1")
	code, out, _ = runCLI(t, "jobs", srv, "submit", "-q", "default", "-p", "other")
	if code != 0 || json.Unmarshal([]byte(out), &again) != nil || again.ID != j.ID {
		t.Fatalf("RELAY_SUBMIT_IDEMPOTENCY_KEY: exit %d, %q", code, out)
	}
}

// A jobs command that reaches no relay names the address it tried and how
// to change it.
func TestJobsUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "https://" + l.Addr().String()
	l.Close()
	s := newSetup(t)
	t.Setenv("RELAY_SERVER_PIN", s.relayPin.String())
	t.Setenv("RELAY_TOKEN", s.token)
	code, _, errOut := runCLI(t, "jobs", "--server", addr, "get", "x")
	want := "cannot reach relay at " + addr + " (set its API address with --server or $RELAY_SERVER)"
	if code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("exit %d, %q; want %q", code, errOut, want)
	}
	t.Setenv("RELAY_SERVER", addr)
	if code, _, errOut := runCLI(t, "jobs", "list"); code != 1 || !strings.Contains(errOut, want) {
		t.Fatalf("RELAY_SERVER: exit %d, %q", code, errOut)
	}
}

// Without --db relay keeps relay.db in its working directory, so it runs
// on a laptop as it is; a directory that is not there is refused naming
// --db.
func TestServeDefaultDB(t *testing.T) {
	s := newSetup(t)
	var args []string
	for i := 0; i < len(s.serveArgs()); i++ {
		if a := s.serveArgs()[i]; a == "--db" {
			i++
		} else {
			args = append(args, a)
		}
	}
	wd := t.TempDir()
	p := startRelayIn(t, wd, args)
	if _, err := p.api(s).Enqueue(context.Background(), api.JobRequest{Queue: "default", PayloadText: "x"}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(wd, "relay.db")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("relay.db in the working directory: %v %v", fi, err)
	}
	p.kill()

	missing := filepath.Join(s.dir, "no-such-dir", "relay.db")
	code, _, errOut := runCLI(t, append(args, "--db", missing)...)
	if code != 2 || !strings.Contains(errOut, "--db "+missing) || !strings.Contains(errOut, "$RELAY_DB") {
		t.Fatalf("missing directory: exit %d, %q", code, errOut)
	}
}

// Bad configuration stops relay at start with exit 2 and a message naming
// what is wrong; nothing is created.
func TestServeRefusesBadConfig(t *testing.T) {
	s := newSetup(t)
	badKey := filepath.Join(s.dir, "open.key")
	b, err := os.ReadFile(filepath.Join(s.dir, "relay", keys.IdentityKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badKey, b, 0o644); err != nil {
		t.Fatal(err)
	}
	badWorkers := filepath.Join(s.dir, "bad-workers.yaml")
	if err := os.WriteFile(badWorkers, []byte("workers:\n  - name: bunny\n    pins: [sha256/nope]\n    queues: {default: [lease]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	badProducers := filepath.Join(s.dir, "bad", "producers.yaml")
	if err := os.Mkdir(filepath.Dir(badProducers), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(badProducers, []byte("producers:\n  - name: ci\n    tokens: ["+s.token+"]\n    queues: {default: [enqueue]}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	db := filepath.Join(s.dir, "never.db")
	base := func(extra ...string) []string {
		args := s.serveArgs(extra...)
		for i, a := range args {
			if a == filepath.Join(s.dir, "relay.db") {
				args[i] = db
			}
		}
		return args
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"missing flags", []string{"serve"}, "missing flags"},
		{"key readable by others", base("--identity-key", badKey), "readable by group or others"},
		{"bad workers file", base("--workers", badWorkers), "bad-workers.yaml:3: workers[0].pins[0]: parsing pin"},
		{"missing workers file", base("--workers", filepath.Join(s.dir, "none.yaml")), "--workers"},
		{"bad producers file", base("--producers", badProducers), "producers.yaml:3: producers[0].tokens[0]: this is a token, not its hash"},
		{"missing producers file", base("--producers", filepath.Join(s.dir, "none.yaml")), "--producers"},
		{"one address for both", base("--http", "127.0.0.1:18080", "--admin", "127.0.0.1:18080"), "--admin and --http"},
		{"payload cap", base("--max-payload", "5000000"), "--max-payload"},
		{"packet size", base("--packet-size", "1000"), "packet size 1000"},
		{"keep-alive past idle", base("--keep-alive", "40s"), "keep-alive"},
		{"bad duration", base("--lease-duration", "soon"), "lease-duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := runCLI(t, tt.args...)
			if code != 2 || !strings.Contains(errOut, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 mentioning %q", code, errOut, tt.want)
			}
		})
	}
	if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused start created the database: %v", err)
	}
}

// SIGTERM drains and exits 0; the restarted relay has everything.
func TestGracefulShutdown(t *testing.T) {
	s := newSetup(t)
	p := startRelay(t, s)
	j, err := p.api(s).Enqueue(context.Background(), api.JobRequest{Queue: "default", PayloadText: "x"})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("relay did not exit within 20s of SIGTERM")
	}
	if p.waitErr != nil {
		t.Fatalf("exit after SIGTERM: %v\n%s", p.waitErr, p.log())
	}
	p = startRelay(t, s)
	if got, err := p.api(s).Get(context.Background(), j.ID); err != nil || got.State != "queued" {
		t.Fatalf("after restart: %+v %v", got, err)
	}
}
