package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// files are bunny's identity and a config file naming it.
type files struct {
	dir, cert, key string
	id             keys.Identity
}

func newFiles(t *testing.T) *files {
	t.Helper()
	dir := t.TempDir()
	if _, err := keys.WriteIdentity(filepath.Join(dir, "id"), "bunny-1", false); err != nil {
		t.Fatal(err)
	}
	f := &files{dir: dir, cert: filepath.Join(dir, "id", keys.IdentityCertFile), key: filepath.Join(dir, "id", keys.IdentityKeyFile)}
	id, err := keys.LoadIdentity(f.cert, f.key)
	if err != nil {
		t.Fatal(err)
	}
	f.id = id
	return f
}

// config writes a configuration with one exec queue.
func (f *files) config(t *testing.T, addr string, pin keys.Pin, extra string, command ...string) string {
	t.Helper()
	q, _ := json.Marshal(command)
	body := fmt.Sprintf(`relay:
  address: %s
  pin: %s
identity:
  certFile: %s
  keyFile: %s
admin:
  listen: 127.0.0.1:0
%s
queues:
  - name: default
    exec:
      command: %s
      timeout: 30s
`, addr, pin, f.cert, f.key, extra, q)
	path := filepath.Join(f.dir, "bunny.yaml")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func runInProcess(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// Bad configuration exits 2 before connecting, naming the field or flag.
func TestBadConfigExits2(t *testing.T) {
	f := newFiles(t)
	pin := f.id.Pin() // any valid pin: nothing is dialled
	good := f.config(t, "127.0.0.1:9", pin, "concurrency: 2", "cat")
	bad := filepath.Join(f.dir, "bad.yaml")
	body, _ := os.ReadFile(good)
	if err := os.WriteFile(bad, bytes.Replace(body, []byte("concurrency: 2"), []byte("concurrency: 2\nconcurrencyy: 3"), 1), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"unknown field", []string{"run", "--config", bad}, "bad.yaml:10: concurrencyy: unknown field"},
		{"missing file", []string{"run", "--config", filepath.Join(f.dir, "none.yaml")}, "no such file"},
		{"no config", []string{"run"}, "--config"},
		{"bad address flag", []string{"run", "--config", good, "--relay-address", "nowhere"}, "--relay-address"},
		{"bad pin flag", []string{"run", "--config", good, "--relay-pin", "sha256/x"}, "--relay-pin"},
		{"bad concurrency flag", []string{"run", "--config", good, "--concurrency", "-1"}, "--concurrency"},
		{"bad admin flag", []string{"run", "--config", good, "--admin-listen", "nowhere"}, "--admin-listen"},
		{"bad log format", []string{"run", "--config", good, "--log-format", "xml"}, "log-format"},
		{"check unknown field", []string{"config", "check", bad}, "concurrencyy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runInProcess(tt.args...)
			if code != 2 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and %q", code, stderr, tt.want)
			}
		})
	}
	// A key file others can read: refused by name, the key never printed.
	if err := os.Chmod(f.key, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runInProcess("run", "--config", good)
	if code != 2 || !strings.Contains(stderr, "identity.keyFile") || strings.Contains(stderr, "PRIVATE") {
		t.Fatalf("readable key: exit %d, %q", code, stderr)
	}
	code, stdout, _ := runInProcess("config", "check", "--offline", good)
	if code != 0 || !strings.Contains(stdout, "valid") || !strings.Contains(stdout, "at most 2 jobs") {
		t.Fatalf("config check --offline: %d %q", code, stdout)
	}
	// A value marked REPLACE passes only --offline --allow-placeholders.
	text, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := filepath.Join(t.TempDir(), "tmpl.yaml")
	if err := os.WriteFile(tmpl, []byte(strings.Replace(string(text), "127.0.0.1:9", "relay-REPLACE:7443", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runInProcess("config", "check", "--offline", tmpl); code != 2 || !strings.Contains(stderr, "relay.address") || !strings.Contains(stderr, "is a placeholder") {
		t.Fatalf("placeholder: %d %q", code, stderr)
	}
	if code, _, stderr := runInProcess("config", "check", "--allow-placeholders", tmpl); code != 2 || !strings.Contains(stderr, "needs --offline") {
		t.Fatalf("--allow-placeholders alone: %d %q", code, stderr)
	}
	if code, stdout, stderr := runInProcess("config", "check", "--offline", "--allow-placeholders", tmpl); code != 0 || !strings.Contains(stdout, "valid") {
		t.Fatalf("--offline --allow-placeholders: %d %q", code, stderr)
	}
	if code, stdout, _ := runInProcess("--version"); code != 0 || strings.TrimSpace(stdout) != "bunny "+buildinfo.Read().String() {
		t.Fatalf("--version: %d %q", code, stdout)
	}
}

// buildBunny builds the command into a temporary directory, stamped as
// make build stamps it (version v9.9.9-test, revision feedface).
func buildBunny(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command to build bunny with")
	}
	bin := filepath.Join(t.TempDir(), "bunny")
	cmd := exec.Command(gobin, "build", "-ldflags", buildinfo.LDFlags("v9.9.9-test", "feedface"), "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// proc is bunny running as a process.
type proc struct {
	cmd    *exec.Cmd
	admin  chan string
	echo   chan string // bunny handler echo's URL
	exited chan struct{}
	logs   testutil.Buffer
	err    error
}

func startBunny(t *testing.T, bin string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "QUIC_GO_DISABLE_RECEIVE_BUFFER_WARNING=true")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, admin: make(chan string, 1), echo: make(chan string, 1), exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			fmt.Fprintf(&p.logs, "%s\n", sc.Bytes())
			var rec struct{ Msg, Addr, URL string }
			if json.Unmarshal(sc.Bytes(), &rec) == nil && rec.Msg == "admin server listening" {
				p.admin <- "http://" + rec.Addr
			}
			if rec.Msg == "echo handler listening" {
				p.echo <- rec.URL
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("bunny's log:\n%s", p.log())
		}
	})
	return p
}

// adminURL waits for bunny's admin server and returns its base URL.
func (p *proc) adminURL(t *testing.T) string {
	t.Helper()
	select {
	case u := <-p.admin:
		return u
	case <-time.After(20 * time.Second):
		t.Fatal("bunny's admin server did not start")
		return ""
	}
}

func (p *proc) log() string {
	return p.logs.String()
}

func (p *proc) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(d):
		t.Fatalf("bunny did not exit within %s", d)
	}
	return p.cmd.ProcessState.ExitCode()
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// SIGTERM during work: the running jobs finish and complete, nothing is
// leased after the signal, bunny exits 0, and nothing is lost (a second
// bunny finishes the rest).
func TestSIGTERMDrains(t *testing.T) {
	bin := buildBunny(t)
	f := newFiles(t)
	r := relaytest.Start(t, relaytest.Options{Worker: f.id, Queues: []string{"default"}})
	marks := filepath.Join(f.dir, "marks")
	if err := os.Mkdir(marks, 0o755); err != nil {
		t.Fatal(err)
	}
	// Each run leaves a start mark, works for 1.5s, then an end mark.
	script := `touch ` + marks + `/$BUNNY_JOB_ID.start; sleep 1.5; tr a-z A-Z; touch ` + marks + `/$BUNNY_JOB_ID.end`
	cfg := f.config(t, r.Addr, r.ID.Pin(), "concurrency: 2\nshutdownGrace: 20s", "/bin/sh", "-c", script)
	var jobs []queue.NewJob
	for i := range 6 {
		jobs = append(jobs, queue.NewJob{Queue: "default", Payload: []byte(fmt.Sprintf("job %d", i))})
	}
	ids := r.Enqueue(jobs...)

	p := startBunny(t, bin, "run", "--config", cfg, "--log-format", "json")
	adminURL := p.adminURL(t)
	count := func(suffix string) int {
		m, _ := filepath.Glob(filepath.Join(marks, "*"+suffix))
		return len(m)
	}
	testutil.Eventually(t, 15*time.Second, "two jobs to start", func() bool { return count(".start") >= 2 })
	if code, body := get(t, adminURL+"/readyz"); code != 200 {
		t.Errorf("/readyz while connected: %d %q", code, body)
	}
	if _, body := get(t, adminURL+"/metrics"); !strings.Contains(body, "bunny_jobs_running 2") || !strings.Contains(body, "bunny_connected 1") {
		t.Errorf("/metrics lacks bunny_jobs_running 2 or bunny_connected 1")
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM", code)
	}
	if s, e := count(".start"), count(".end"); s != 2 || e != 2 {
		t.Errorf("%d jobs started and %d finished; want 2 and 2 (none started after the signal)", s, e)
	}
	var done []string
	for _, id := range ids {
		j := r.Get(id)
		switch {
		case j.State == store.Succeeded && j.Attempt == 1:
			done = append(done, id)
		case j.State == store.Queued && j.Attempt == 0:
		default:
			t.Errorf("job %s after SIGTERM: %s, attempt %d (want succeeded, or queued and never leased)", id, j.State, j.Attempt)
		}
	}
	if len(done) != 2 {
		t.Errorf("%d jobs succeeded before exit; want the 2 running", len(done))
	}
	if !strings.Contains(p.log(), "stopping: no more leases") {
		t.Error("no log line for the drain")
	}

	// Nothing lost: another bunny finishes the rest.
	p2 := startBunny(t, bin, "run", "--config", cfg, "--concurrency", "4", "--admin-listen", "")
	for i, j := range r.WaitTerminal(20*time.Second, ids...) {
		if want := strings.ToUpper(fmt.Sprintf("job %d", i)); j.State != store.Succeeded || string(j.Result) != want {
			t.Errorf("job %s: %s %q, want succeeded %q", j.ID, j.State, j.Result, want)
		}
	}
	if err := p2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p2.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("second bunny: exit code %d", code)
	}
	if n := r.Metric("relay_completions_total", nil); n != 6 {
		t.Errorf("relay counted %v completions of 6 jobs", n)
	}
}

// The smoke test needs nothing but bunny's binary: `bunny handler echo`
// is the queue's http handler, and a job's payload comes back as its
// result through relay.
func TestEchoHandlerSmoke(t *testing.T) {
	bin := buildBunny(t)
	f := newFiles(t)
	r := relaytest.Start(t, relaytest.Options{Worker: f.id, Queues: []string{"default"}})
	echo := startBunny(t, bin, "handler", "echo", "--listen", "127.0.0.1:0", "--log-format", "json")
	var url string
	select {
	case url = <-echo.echo:
	case <-time.After(20 * time.Second):
		t.Fatalf("the echo handler did not start:\n%s", echo.log())
	}
	cfg := filepath.Join(f.dir, "bunny.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, "relay: {address: %s, pin: %s}\nidentity: {certFile: %s, keyFile: %s}\nadmin: {listen: ''}\nqueues:\n  - name: default\n    http: {url: %s}\n",
		r.Addr, r.ID.Pin(), f.cert, f.key, url), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out, errOut := runInProcess("config", "check", cfg); code != 0 {
		t.Fatalf("config check: %d %s %s", code, out, errOut)
	}
	startBunny(t, bin, "run", "--config", cfg, "--log-format", "json")
	ids := r.Enqueue(queue.NewJob{Queue: "default", Payload: []byte("hello through the tunnel")})
	j := r.WaitTerminal(30*time.Second, ids...)[0]
	if j.State != store.Succeeded || string(j.Result) != "hello through the tunnel" {
		t.Fatalf("job %s: %q (%s)", j.State, j.Result, j.LastError)
	}
	if err := echo.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := echo.wait(t, 10*time.Second); code != 0 {
		t.Fatalf("echo handler exit %d after SIGTERM:\n%s", code, echo.log())
	}
}
