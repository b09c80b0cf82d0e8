package worker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/internal/relaytest"
	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

type env struct {
	t     *testing.T
	relay *relaytest.Relay
	w     *Worker
	logs  *testutil.Buffer
	stop  context.CancelFunc
	done  chan error
}

// setup starts a relay with the queues of handlers and a worker for them
// (not yet running).
func setup(t *testing.T, handlers map[string]handler.Handler, tune func(*Options)) *env {
	t.Helper()
	id := testutil.Identity(t, "bunny")
	var queues []string
	for q := range handlers {
		queues = append(queues, q)
	}
	r := relaytest.Start(t, relaytest.Options{Worker: id, Queues: queues,
		Queue: queue.Options{Backoff: queue.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}, DefaultLease: 3 * time.Second}})
	logs := &testutil.Buffer{}
	o := Options{
		Addr: r.Addr, Identity: id, RelayPin: r.ID.Pin(), Handlers: handlers,
		Concurrency: 4, LeaseWait: time.Second, BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond,
		CallTimeout: 3 * time.Second, SettleTimeout: 3 * time.Second, ShutdownGrace: 5 * time.Second,
		Logger:     logs.Logger(),
		Registerer: prometheus.NewRegistry(),
	}
	if tune != nil {
		tune(&o)
	}
	return newEnv(t, r, o, logs)
}

// newEnv starts a worker with o against r; it is shut down (and its log,
// logs, shown if the test failed) when the test ends.
func newEnv(t *testing.T, r *relaytest.Relay, o Options, logs *testutil.Buffer) *env {
	t.Helper()
	w, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, relay: r, w: w, logs: logs}
	t.Cleanup(func() {
		e.shutdown(20 * time.Second)
		if t.Failed() {
			t.Logf("bunny's log:\n%s", logs.String())
		}
	})
	return e
}

func (e *env) run() {
	ctx, cancel := context.WithCancel(context.Background())
	e.stop, e.done = cancel, make(chan error, 1)
	go func() { e.done <- e.w.Run(ctx) }()
}

// shutdown cancels Run and waits for it, bounded by d.
func (e *env) shutdown(d time.Duration) error {
	if e.done == nil {
		return nil
	}
	e.stop()
	select {
	case err := <-e.done:
		e.done = nil
		return err
	case <-time.After(d):
		e.t.Errorf("Run did not return within %s of its context ending", d)
		e.done = nil
		return nil
	}
}

func upper(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	if string(b) == "teapot" {
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "short and stout")
		return
	}
	_, _ = w.Write(bytes.ToUpper(b))
}

// Both kinds of handler complete their jobs with the right results; an
// exec failure carries stderr, an HTTP failure the status and body; a
// hanging command is killed at its timeout (3 s, so that a loaded machine
// does not time out the ordinary jobs too).
func TestBothHandlers(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(upper))
	defer srv.Close()
	e := setup(t, map[string]handler.Handler{
		"exec": &handler.Exec{Command: []string{"/bin/sh", "-c", `p=$(cat); case "$p" in fail) echo "no good: $BUNNY_JOB_ID" >&2; exit 7;; hang) sleep 60;; *) printf %s "$p" | tr a-z A-Z;; esac`},
			Timeout: 3 * time.Second, MaxOutput: 1 << 20},
		"web": &handler.HTTP{URL: srv.URL + "/run", Timeout: 5 * time.Second, MaxOutput: 1 << 20},
	}, nil)
	e.run()
	var ids []string
	var want []string
	for i := range 5 {
		p := "job " + strconv.Itoa(i)
		ids = append(ids, e.relay.Enqueue(queue.NewJob{Queue: "exec", Payload: []byte(p)}, queue.NewJob{Queue: "web", Payload: []byte(p)})...)
		want = append(want, strings.ToUpper(p), strings.ToUpper(p))
	}
	bad := e.relay.Enqueue(
		queue.NewJob{Queue: "exec", Payload: []byte("fail"), MaxAttempts: 1},
		queue.NewJob{Queue: "exec", Payload: []byte("hang"), MaxAttempts: 1},
		queue.NewJob{Queue: "web", Payload: []byte("teapot"), MaxAttempts: 1},
	)
	for i, j := range e.relay.WaitTerminal(20*time.Second, ids...) {
		if j.State != store.Succeeded || string(j.Result) != want[i] {
			t.Errorf("job %d: %s %q, want succeeded %q", i, j.State, j.Result, want[i])
		}
	}
	got := e.relay.WaitTerminal(20*time.Second, bad...)
	for i, wantErr := range []string{"exit status 7; stderr: no good: " + bad[0], "timed out after 3s; process group killed", "418 I'm a teapot: short and stout"} {
		if got[i].State != store.Dead || !strings.Contains(got[i].LastError, wantErr) {
			t.Errorf("bad job %d: %s, error %q; want dead with %q", i, got[i].State, got[i].LastError, wantErr)
		}
	}
	if val(e.w.m.connected) != 1 || e.w.Ready() != nil {
		t.Errorf("not connected/ready")
	}
	// Relay records an outcome before bunny counts it: read the counters
	// once Run has returned.
	if err := e.shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if e.w.Ready() == nil {
		t.Error("ready after Run returned")
	}
	if n := val(e.w.m.succeeded.WithLabelValues("exec")) + val(e.w.m.succeeded.WithLabelValues("web")); n != 10 {
		t.Errorf("bunny_jobs_succeeded_total = %v, want 10", n)
	}
	if n := val(e.w.m.failed.WithLabelValues("exec", "handler")); n != 2 {
		t.Errorf("bunny_jobs_failed_total{exec,handler} = %v, want 2", n)
	}
}

// inFlight is an HTTP handler that counts the jobs inside it and records
// the most at once.
type inFlight struct {
	now, peak, total atomic.Int64
	hold             time.Duration
}

func (f *inFlight) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.now.Add(1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			break
		}
	}
	defer f.now.Add(-1)
	f.total.Add(1)
	time.Sleep(f.hold)
	_, _ = io.Copy(w, r.Body)
}

// The concurrency limit is never exceeded, as the handler measures it,
// and it is reached.
func TestConcurrencyLimit(t *testing.T) {
	f := &inFlight{hold: 40 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	e := setup(t, map[string]handler.Handler{"web": &handler.HTTP{URL: srv.URL, Timeout: 5 * time.Second, MaxOutput: 100}},
		func(o *Options) { o.Concurrency = 3 })
	var jobs []queue.NewJob
	for i := range 40 {
		jobs = append(jobs, queue.NewJob{Queue: "web", Payload: []byte(strconv.Itoa(i))})
	}
	ids := e.relay.Enqueue(jobs...)
	e.run()
	for _, j := range e.relay.WaitTerminal(30*time.Second, ids...) {
		if j.State != store.Succeeded {
			t.Fatalf("job %s %s", j.ID, j.State)
		}
	}
	if p := f.peak.Load(); p != 3 {
		t.Errorf("peak concurrency %d, want exactly 3 (the limit, reached)", p)
	}
	if f.total.Load() != 40 {
		t.Errorf("handler ran %d times for 40 jobs", f.total.Load())
	}
}

// relay killed mid-job and restarted on the same file and port: every job
// ends succeeded, completed exactly once; results held across the outage
// are delivered.
func TestRelayRestartMidJob(t *testing.T) {
	f := &inFlight{hold: 300 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	e := setup(t, map[string]handler.Handler{"web": &handler.HTTP{URL: srv.URL, Timeout: 5 * time.Second, MaxOutput: 100}}, nil)
	var jobs []queue.NewJob
	for i := range 20 {
		jobs = append(jobs, queue.NewJob{Queue: "web", Payload: []byte("p" + strconv.Itoa(i))})
	}
	ids := e.relay.Enqueue(jobs...)
	e.run()
	testutil.Eventually(t, 10*time.Second, "the jobs to start", func() bool { return f.now.Load() >= 4 })
	e.relay.Kill()
	// The running jobs finish while relay is away: their results are held.
	time.Sleep(700 * time.Millisecond)
	if p := val(e.w.m.pending); p == 0 {
		t.Errorf("no results held while relay was away")
	}
	e.relay.Start()
	for i, j := range e.relay.WaitTerminal(30*time.Second, ids...) {
		if j.State != store.Succeeded || string(j.Result) != "p"+strconv.Itoa(i) {
			t.Errorf("job %s: %s %q", j.ID, j.State, j.Result)
		}
	}
	if n := e.relay.Metric("relay_completions_total", nil); n != 20 {
		t.Errorf("relay counted %v completions for 20 jobs", n)
	}
	if n := val(e.w.m.reconnects); n < 1 {
		t.Errorf("bunny_reconnects_total = %v", n)
	}
	logs := e.logs.String()
	if strings.Count(logs, "disconnected from relay") != 1 || strings.Count(logs, "reconnected to relay") != 1 {
		t.Errorf("want one disconnected and one reconnected line:\n%s", logs)
	}
}

// Stopping: leasing stops at once; running jobs finish within the grace
// and complete; jobs never started stay queued, untouched.
func TestDrainFinishesRunningJobs(t *testing.T) {
	f := &inFlight{hold: 500 * time.Millisecond}
	srv := httptest.NewServer(f)
	defer srv.Close()
	e := setup(t, map[string]handler.Handler{"web": &handler.HTTP{URL: srv.URL, Timeout: 5 * time.Second, MaxOutput: 100}},
		func(o *Options) { o.Concurrency = 2 })
	var jobs []queue.NewJob
	for range 6 {
		jobs = append(jobs, queue.NewJob{Queue: "web", Payload: []byte("x")})
	}
	ids := e.relay.Enqueue(jobs...)
	e.run()
	testutil.Eventually(t, 10*time.Second, "the jobs to start", func() bool { return f.now.Load() >= 2 })
	if err := e.shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	var succeeded, queued int
	for _, id := range ids {
		switch j := e.relay.Get(id); {
		case j.State == store.Succeeded:
			succeeded++
		case j.State == store.Queued && j.Attempt == 0:
			queued++
		default:
			t.Errorf("job %s: %s attempt %d", id, j.State, j.Attempt)
		}
	}
	if succeeded != 2 || queued != 4 {
		t.Errorf("%d succeeded and %d untouched; want 2 and 4", succeeded, queued)
	}
}

// Past the grace, running jobs are stopped and failed back for prompt
// redelivery, not left to expire.
func TestDrainFailsBackAfterGrace(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	e := setup(t, map[string]handler.Handler{"exec": &handler.Exec{
		Command: []string{"/bin/sh", "-c", "echo $$ > " + pidFile + "; sleep 60"}, Timeout: time.Minute, MaxOutput: 100}},
		func(o *Options) { o.Concurrency = 1; o.ShutdownGrace = 200 * time.Millisecond })
	ids := e.relay.Enqueue(queue.NewJob{Queue: "exec", Payload: []byte("x")})
	e.run()
	testutil.Eventually(t, 10*time.Second, "the job to start", func() bool { return e.relay.Get(ids[0]).State == store.Leased && !fileEmpty(pidFile) })
	start := time.Now()
	if err := e.shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("stopping took %s with a 200ms grace", took)
	}
	j := e.relay.Get(ids[0])
	if (j.State != store.Retrying && j.State != store.Queued) || !strings.Contains(j.LastError, "shut down") || j.RunAfter.After(time.Now().Add(time.Second)) {
		t.Errorf("job after fail-back: %s, run after %s, error %q", j.State, time.Until(j.RunAfter), j.LastError)
	}
	b, _ := os.ReadFile(pidFile)
	if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || syscall.Kill(pid, 0) == nil {
		t.Errorf("the handler (pid %q) still runs", b)
	}
	if n := val(e.w.m.failed.WithLabelValues("exec", "shutdown")); n != 1 {
		t.Errorf("bunny_jobs_failed_total{shutdown} = %v", n)
	}
}

func fileEmpty(p string) bool {
	b, _ := os.ReadFile(p)
	return len(bytes.TrimSpace(b)) == 0
}

// A cancel asked of relay stops the running handler at the next heartbeat
// and the job ends cancelled.
func TestCancelRequested(t *testing.T) {
	e := setup(t, map[string]handler.Handler{"exec": &handler.Exec{Command: []string{"sleep", "60"}, Timeout: time.Minute, MaxOutput: 100}}, nil)
	ids := e.relay.Enqueue(queue.NewJob{Queue: "exec", LeaseDuration: time.Second})
	e.run()
	testutil.Eventually(t, 10*time.Second, "the job to be leased", func() bool { return e.relay.Get(ids[0]).State == store.Leased })
	if _, err := e.relay.Queue().Cancel(context.Background(), ids[0]); err != nil {
		t.Fatal(err)
	}
	j := e.relay.WaitTerminal(5*time.Second, ids...)[0]
	if j.State != store.Cancelled {
		t.Errorf("job %s, error %q", j.State, j.LastError)
	}
	if !strings.Contains(e.logs.String(), "relay asks to cancel the job") {
		t.Error("no log line for the cancel")
	}
}

// Without relay, the worker retries quietly: one line for the outage, not
// one per attempt; /readyz says not ready.
func TestUnreachableLogsOnce(t *testing.T) {
	e := setup(t, map[string]handler.Handler{"q": &handler.Exec{Command: []string{"cat"}, Timeout: time.Second, MaxOutput: 100}},
		func(o *Options) { o.DialTimeout = 100 * time.Millisecond })
	e.relay.Kill()
	e.run()
	time.Sleep(1500 * time.Millisecond)
	if e.w.Ready() == nil {
		t.Error("ready without relay")
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "level=WARN msg=\"nothing answered at "+e.relay.Addr); n != 1 {
		t.Errorf("%d warnings for one outage:\n%s", n, logs)
	}
	if n := strings.Count(logs, "retrying with backoff"); n < 3 {
		t.Errorf("only %d attempts in 1.5s", n)
	}
	e.relay.Start()
	testutil.Eventually(t, 10*time.Second, "a connection once relay was back", func() bool { return e.w.Ready() == nil })
}

// A dial that fails says what happened and what to check, naming the
// address, not "connection lost" for a connection that never was.
func TestDialProblemsSayWhatToCheck(t *testing.T) {
	// An address on loopback where nothing listens.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nowhere := pc.LocalAddr().String()
	pc.Close()
	h := map[string]handler.Handler{"q": &handler.Exec{Command: []string{"cat"}, Timeout: time.Second, MaxOutput: 100}}
	for _, tc := range []struct {
		name string
		tune func(*Options)
		want string // the first line's level and message
	}{
		{"nothing listens", func(o *Options) { o.Addr = nowhere },
			`level=WARN msg="nothing answered at ` + nowhere + ` within 300ms (check relay.address, the local gateway's forward rule for it, and that relay's gateway and relay are up`},
		{"another relay key", func(o *Options) { o.RelayPin = testutil.Identity(t, "not-relay").Pin() },
			`level=ERROR msg="the server at 127.0.0.1:`},
		{"an identity relay does not know", func(o *Options) { o.Identity = testutil.Identity(t, "stranger") },
			`level=ERROR msg="relay at 127.0.0.1:`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := setup(t, h, func(o *Options) { o.DialTimeout = 300 * time.Millisecond; tc.tune(o) })
			e.run()
			testutil.Eventually(t, 10*time.Second, "a second attempt", func() bool { return e.logs.Count("retrying with backoff") >= 2 })
			logs := e.logs.String()
			if !strings.Contains(logs, tc.want) || strings.Count(logs, "level=WARN")+strings.Count(logs, "level=ERROR") != 1 {
				t.Errorf("want one line starting %q:\n%s", tc.want, logs)
			}
			if strings.Contains(logs, "connection lost") {
				t.Errorf("a connection that never was is called lost:\n%s", logs)
			}
		})
	}
}

// val reads a counter or gauge.
func val(m prometheus.Metric) float64 {
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		panic(err)
	}
	if d.Counter != nil {
		return d.Counter.GetValue()
	}
	return d.Gauge.GetValue()
}

// A lease relay has moved on from (it expired while relay was away) is
// Lost at the next heartbeat: the handler is stopped and the job dropped
// without a report; the redelivered attempt completes it.
func TestLostLeaseStopsHandler(t *testing.T) {
	id := testutil.Identity(t, "bunny")
	r := relaytest.Start(t, relaytest.Options{Worker: id, Queues: []string{"exec"}, Queue: queue.Options{
		Backoff: queue.Backoff{Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}, RestartGrace: time.Millisecond}})
	logs := &testutil.Buffer{}
	e := newEnv(t, r, Options{Addr: r.Addr, Identity: id, RelayPin: r.ID.Pin(), LeaseWait: time.Second,
		BackoffMin: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, CallTimeout: 2 * time.Second,
		Handlers: map[string]handler.Handler{"exec": &handler.Exec{
			Command: []string{"/bin/sh", "-c", `if [ "$BUNNY_ATTEMPT" = 1 ]; then sleep 30; fi; cat`}, Timeout: time.Minute, MaxOutput: 100}},
		Logger: slog.New(slog.NewTextHandler(logs, nil)), Registerer: prometheus.NewRegistry()}, logs)
	ids := r.Enqueue(queue.NewJob{Queue: "exec", Payload: []byte("done"), LeaseDuration: time.Second})
	w := e.w
	e.run()
	testutil.Eventually(t, 10*time.Second, "the job to start", func() bool { return val(w.m.running) == 1 })
	// relay is away for longer than the lease (heartbeat extensions are
	// not durable) and comes back with a 1ms restart grace: the lease
	// expires, the job is redelivered, and attempt 1 is no longer ours.
	r.Kill()
	time.Sleep(1500 * time.Millisecond)
	r.Start()
	j := r.WaitTerminal(15*time.Second, ids...)[0]
	if j.State != store.Succeeded || j.Attempt != 2 || string(j.Result) != "done" {
		t.Fatalf("job %s attempt %d result %q", j.State, j.Attempt, j.Result)
	}
	if err := e.shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if n := val(w.m.lost.WithLabelValues("exec")); n < 1 {
		t.Errorf("bunny_leases_lost_total = %v", n)
	}
	if n := val(w.m.failed.WithLabelValues("exec", "handler")); n != 0 {
		t.Errorf("the lost attempt was reported as failed %v times", n)
	}
	if !strings.Contains(logs.String(), "relay says the lease is lost; stopping the job") {
		t.Error("no log line for the lost lease")
	}
}
