package demo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/tunnel"
)

// Options configure a demo run.
type Options struct {
	// BinDir holds the tunnel, relay and bunny binaries; they are looked
	// up on PATH when not there.
	BinDir string
	// Jobs is how many jobs to submit (default 2000); PayloadSize their
	// size in bytes (default 1024).
	Jobs, PayloadSize int
	// Concurrency is bunny's job slots (default 16).
	Concurrency int
	// Timeout bounds the whole run (default 1 minute).
	Timeout time.Duration
	// Keep leaves the temporary directory (keys, configs, logs) in place.
	Keep bool
	// HA runs two gateways a side and SIGKILLs one (aks-a, the one bunny
	// starts on) when half the jobs are done, then restarts it.
	HA bool
	// Out receives the demo's report.
	Out    io.Writer
	Logger *slog.Logger
}

// Summary is what a run measured.
type Summary struct {
	Jobs, Succeeded int
	// Retried counts jobs that took more than one attempt.
	Retried  int
	Elapsed  time.Duration
	P50, P99 time.Duration
	// TunnelRx and TunnelTx are the AKS gateway's WireGuard bytes from and
	// to its peer.
	TunnelRx, TunnelTx uint64
	// IngressRefused counts packets the EKS gateway refused at ingress.
	IngressRefused uint64
	// With HA: the gateway killed, the longest pause between handled
	// jobs after the kill, and how long the restarted gateway took from
	// its start to handshakes with both of the other side's.
	Killed        string
	Pause, Rejoin time.Duration
}

// JobsPerSecond is Succeeded over Elapsed.
func (s Summary) JobsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Succeeded) / s.Elapsed.Seconds()
}

// Run runs the demo: it starts the four processes, runs the jobs, checks
// them, proves the scope and stops everything, whatever happens.
func Run(ctx context.Context, o Options) (Summary, error) {
	if o.Jobs <= 0 {
		o.Jobs = 2000
	}
	if o.PayloadSize <= 0 {
		o.PayloadSize = 1024
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	var sum Summary
	bins := map[string]string{}
	for _, name := range []string{"tunnel", "relay", "bunny"} {
		p, err := findBinary(o.BinDir, name)
		if err != nil {
			return sum, err
		}
		bins[name] = p
	}
	dir, err := os.MkdirTemp("", "tunnel-demo-")
	if err != nil {
		return sum, fmt.Errorf("creating the demo's directory: %w", err)
	}
	if o.Keep {
		fmt.Fprintf(o.Out, "keys, configs and logs are in %s (kept)\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	// The job handler: bunny POSTs each payload here; the result is the
	// payload's SHA-256, which the demo checks for every job.
	var handled atomic.Int64
	var timesMu sync.Mutex
	var times []time.Time // when each job was handled
	hl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return sum, fmt.Errorf("starting the job handler: %w", err)
	}
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		timesMu.Lock()
		times = append(times, time.Now())
		timesMu.Unlock()
		handled.Add(1)
		_, _ = w.Write([]byte(hex.EncodeToString(h.Sum(nil))))
	})}
	go func() { _ = hs.Serve(hl) }()
	defer hs.Close()

	// Start relay, the gateways and bunny; stop them in reverse order.
	var procs []*proc
	stopAll := func() {
		for _, p := range slices.Backward(procs) {
			if err := p.stop(15 * time.Second); err != nil {
				o.Logger.Debug("stopped", "process", p.name, "err", err)
			}
		}
		procs = nil
	}
	defer stopAll()
	var s *setup
	t0 := time.Now()
	// The ports are picked free, then bound by the processes a moment
	// later; if another program took one in between, start again.
	for attempt := 1; ; attempt++ {
		s = &setup{dir: filepath.Join(dir, fmt.Sprint("run", attempt)), handler: "http://" + hl.Addr().String() + "/job", concurrency: o.Concurrency}
		startFn := startAll
		if o.HA {
			startFn = startAllHA
		}
		err := startFn(ctx, s, bins, &procs)
		if err == nil {
			break
		}
		stopAll()
		if attempt == 3 || !strings.Contains(err.Error(), "address already in use") {
			return sum, err
		}
		o.Logger.Info("a port was taken while starting; starting again", "err", err)
	}
	if o.HA {
		s.printHA(o.Out, o.Concurrency, time.Since(t0))
	} else {
		fmt.Fprintf(o.Out, "relay        QUIC on %s, producer API on https://%s for producer demo's token only (bunny is given only the aks gateway's forward address)\n", s.relayQUIC, s.relayHTTP)
		fmt.Fprintf(o.Out, "gateway eks  key %s, dials aks at %s (no listening port); exposes udp/%d → relay to peer aks only\n", s.eksPub.Fingerprint(), s.aksWG, relayPort)
		fmt.Fprintf(o.Out, "gateway aks  key %s, WireGuard on %s; forwards udp %s → %s:%d\n", s.aksPub.Fingerprint(), s.aksWG, s.aksForward, eksTunnel, relayPort)
		fmt.Fprintf(o.Out, "bunny        identity %s…, %d slots, relay at %s (the aks gateway), connected\n", s.bunnyPin.String()[:15], o.Concurrency, s.aksForward)
		fmt.Fprintf(o.Out, "all four processes ready in %v\n\n", time.Since(t0).Round(time.Millisecond))
	}

	// Submit the jobs, keeping a few per slot waiting (as a steady producer
	// would, so latency is the path's, not a backlog's), and watch them run.
	relay := &api.Client{BaseURL: "https://" + s.relayHTTP, HTTP: api.HTTPClient(api.ClientTLS(s.relayPin, nil), 30*time.Second), Token: s.token}
	fmt.Fprintf(o.Out, "submitting %d jobs of %d random bytes to queue %q, up to %d waiting at a time\n", o.Jobs, o.PayloadSize, queue, 2*o.Concurrency)
	sub := &submitter{relay: relay, size: o.PayloadSize, want: map[string]string{}}
	f := &fault{s: s, bins: bins, procs: &procs, done: make(chan struct{})}
	alive := func() []*proc { return procs }
	var onHandled func(int64)
	if o.HA {
		alive = f.alive
		onHandled = func(n int64) {
			if n >= int64(o.Jobs/2) && f.killed.IsZero() {
				fmt.Fprintf(o.Out, "  killing gateway aks-a (SIGKILL), the one bunny is using, with %d/%d jobs handled; restarting it in 1 s\n", n, o.Jobs)
				f.inject(ctx, "aks-a")
			}
		}
	}
	if err := sub.run(ctx, o.Out, alive, onHandled, &handled, o.Jobs, 2*o.Concurrency); err != nil {
		return sum, err
	}
	if o.HA {
		select {
		case <-f.done:
		case <-ctx.Done():
			return sum, fmt.Errorf("waiting for the restarted gateway: %w", ctx.Err())
		}
		if f.err != nil {
			return sum, fmt.Errorf("the restarted gateway aks-a: %w", f.err)
		}
		timesMu.Lock()
		sum.Killed, sum.Pause, sum.Rejoin = "aks-a", longestGap(times, f.killed), f.rejoin
		timesMu.Unlock()
	}
	sum.Jobs = len(sub.want)
	want := sub.want

	// Check every job in relay's store: succeeded, with the right result.
	if err := check(ctx, relay, want, &sum); err != nil {
		return sum, err
	}
	if sum.Succeeded != sum.Jobs {
		return sum, fmt.Errorf("%d of %d jobs succeeded", sum.Succeeded, sum.Jobs)
	}
	aksAdmins := []string{s.aksAdmin}
	if o.HA {
		aksAdmins = []string{s.ha.gw("aks-a").admin, s.ha.gw("aks-b").admin}
	}
	for _, a := range aksAdmins {
		st, err := status(ctx, a)
		if err != nil {
			return sum, err
		}
		for _, p := range st.Peers {
			sum.TunnelRx += p.RxBytes
			sum.TunnelTx += p.TxBytes
		}
	}
	fmt.Fprintf(o.Out, "\n%d/%d jobs succeeded in %v: %.0f jobs/s; end-to-end latency (submitted → result stored) p50 %v, p99 %v\n",
		sum.Succeeded, sum.Jobs, sum.Elapsed.Round(time.Millisecond), sum.JobsPerSecond(), sum.P50, sum.P99)
	fmt.Fprintf(o.Out, "every result checked (the SHA-256 of its payload); %d jobs needed a second attempt\n", sum.Retried)
	fmt.Fprintf(o.Out, "through the tunnel: %s sent, %s received by the aks gateway (WireGuard, with overhead)\n", mb(sum.TunnelTx), mb(sum.TunnelRx))
	if o.HA {
		fmt.Fprintf(o.Out, "failover: gateway %s killed mid-run; longest pause between handled jobs %v; restarted, it rejoined (handshakes with eks-a and eks-b) %v after it started, nothing else restarted\n",
			sum.Killed, sum.Pause.Round(time.Millisecond), sum.Rejoin.Round(time.Millisecond))
		return sum, nil
	}

	if err := proveScope(ctx, o.Out, s, bins["tunnel"], &sum); err != nil {
		return sum, err
	}
	return sum, nil
}

// submitter enqueues the demo's jobs and remembers each one's expected
// result.
type submitter struct {
	relay *api.Client
	size  int
	want  map[string]string // job id → the SHA-256 of its payload
}

// submit enqueues n jobs of random payloads.
func (b *submitter) submit(ctx context.Context, n int) error {
	reqs := make([]api.JobRequest, n)
	sums := make([]string, n)
	for i := range reqs {
		p := make([]byte, b.size)
		_, _ = rand.Read(p)
		h := sha256.Sum256(p)
		reqs[i], sums[i] = api.JobRequest{Queue: queue, Payload: p}, hex.EncodeToString(h[:])
	}
	jobs, err := b.relay.EnqueueBatch(ctx, reqs)
	if err != nil {
		return fmt.Errorf("submitting jobs: %w", err)
	}
	for i, j := range jobs {
		b.want[j.ID] = sums[i]
	}
	return nil
}

// run submits total jobs, keeping at most window submitted and not yet
// handled, and prints progress until every job has been handled, a
// process dies, or ctx ends.
func (b *submitter) run(ctx context.Context, out io.Writer, alive func() []*proc, onHandled func(int64), handled *atomic.Int64, total, window int) error {
	start := time.Now()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	poll := time.NewTicker(5 * time.Millisecond)
	defer poll.Stop()
	for {
		if waiting := len(b.want) - int(handled.Load()); len(b.want) < total && waiting < window {
			if err := b.submit(ctx, min(window-waiting, total-len(b.want), 200)); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("jobs did not finish in time: %d of %d handled: %w", handled.Load(), total, ctx.Err())
		case <-tick.C:
			fmt.Fprintf(out, "  %5.1fs  %d/%d jobs handled by bunny\n", time.Since(start).Seconds(), handled.Load(), total)
		case <-poll.C:
			for _, p := range alive() {
				if err := p.exited(); err != nil {
					return err
				}
			}
			if onHandled != nil {
				onHandled(handled.Load())
			}
			if handled.Load() >= int64(total) {
				return nil
			}
		}
	}
}

// check reads every job of the demo's queue back from relay, waiting a
// little for results still being stored, and fills in the summary.
func check(ctx context.Context, relay *api.Client, want map[string]string, sum *Summary) error {
	var jobs []api.Job
	for attempt := 0; ; attempt++ {
		jobs = jobs[:0]
		after := ""
		for page := 0; page < 1000; page++ {
			r, err := relay.List(ctx, api.ListOptions{Queue: queue, After: after, Limit: 1000})
			if err != nil {
				return fmt.Errorf("reading jobs back from relay: %w", err)
			}
			jobs = append(jobs, r.Jobs...)
			if after = r.Next; after == "" {
				break
			}
		}
		finished := 0
		for _, j := range jobs {
			if j.FinishedAt != nil {
				finished++
			}
		}
		if finished >= len(want) || attempt >= 100 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	var first, last time.Time
	var lat []time.Duration
	seen := map[string]bool{}
	for _, j := range jobs {
		exp, ok := want[j.ID]
		if !ok {
			return fmt.Errorf("relay holds job %s the demo did not submit", j.ID)
		}
		seen[j.ID] = true
		if j.State != "succeeded" || j.FinishedAt == nil {
			return fmt.Errorf("job %s is %s (last error %q), want succeeded", j.ID, j.State, j.LastError)
		}
		if string(j.Result) != exp {
			return fmt.Errorf("job %s: result %q, want %q (the SHA-256 of its payload)", j.ID, j.Result, exp)
		}
		if j.Attempt > 1 {
			sum.Retried++
		}
		sum.Succeeded++
		if first.IsZero() || j.CreatedAt.Before(first) {
			first = j.CreatedAt
		}
		if j.FinishedAt.After(last) {
			last = *j.FinishedAt
		}
		lat = append(lat, j.FinishedAt.Sub(j.CreatedAt))
	}
	if len(seen) != len(want) {
		return fmt.Errorf("relay holds %d of the %d jobs submitted", len(seen), len(want))
	}
	slices.Sort(lat)
	if len(lat) > 0 {
		sum.P50 = lat[len(lat)/2].Round(100 * time.Microsecond)
		sum.P99 = lat[min(len(lat)-1, len(lat)*99/100)].Round(100 * time.Microsecond)
	}
	sum.Elapsed = last.Sub(first)
	return nil
}

// status reads a gateway's /status.
func status(ctx context.Context, admin string) (tunnel.Status, error) {
	var st tunnel.Status
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/status", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return st, fmt.Errorf("reading the gateway's status: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return st, fmt.Errorf("reading the gateway's status: %s", resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return st, fmt.Errorf("decoding the gateway's status: %w", err)
	}
	return st, nil
}

// proveScope tries, from the bunny side through the tunnel, what eks does
// not expose: relay's API port on eks's tunnel address (TCP) and relay's
// port on another peer address (UDP). Neither may answer.
func proveScope(ctx context.Context, out io.Writer, s *setup, tunnelBin string, sum *Summary) error {
	before, err := status(ctx, s.eksAdmin)
	if err != nil {
		return err
	}
	var d net.Dialer
	tctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// The aks gateway accepts locally, then dials through the tunnel; eks
	// refuses the SYN, so the local connection is closed unanswered.
	tcpAnswered := false
	if c, err := d.DialContext(tctx, "tcp", s.probeTCP); err == nil {
		_ = c.SetDeadline(time.Now().Add(4 * time.Second))
		_, _ = c.Write([]byte("GET /v1/jobs HTTP/1.0\r\n\r\n"))
		n, _ := c.Read(make([]byte, 64))
		tcpAnswered = n > 0
		c.Close()
	}
	udpAnswered := false
	if c, err := d.DialContext(tctx, "udp", s.probeUDP); err == nil {
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_, _ = c.Write([]byte("hello?"))
		n, _ := c.Read(make([]byte, 64))
		udpAnswered = n > 0
		c.Close()
	}
	after, err := status(ctx, s.eksAdmin)
	if err != nil {
		return err
	}
	for k, v := range after.Ingress {
		sum.IngressRefused += v - before.Ingress[k]
	}
	if tcpAnswered || udpAnswered {
		return fmt.Errorf("%w: tcp %s:8080 answered %v, udp %s:%d answered %v", ErrScope, eksTunnel, tcpAnswered, otherAddr, relayPort, udpAnswered)
	}
	// Relay's own address cannot even be named as a destination.
	direct := s.path("aks-relay-direct.yaml")
	if err := os.WriteFile(direct, []byte(s.relayDirect()), 0o600); err != nil {
		return fmt.Errorf("writing the scope probe's config: %w", err)
	}
	check := exec.CommandContext(ctx, tunnelBin, "config", "check", "--offline", direct)
	msg, err := check.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 || !strings.Contains(string(msg), "not one of peer") {
		return fmt.Errorf("%w: a forward to relay's own address %s was not refused by tunnel config check (%v): %s", ErrScope, s.relayQUIC, err, msg)
	}
	fmt.Fprintf(out, "scope: from the bunny side only udp/%d answers through the tunnel; tcp %s:8080 (relay's API port) and udp %s:%d got nothing, eks refused %d packets at ingress; a forward to relay's own address %s is refused (tunnel config check: not one of peer eks's addresses)\n",
		relayPort, eksTunnel, otherAddr, relayPort, sum.IngressRefused, s.relayQUIC)
	return nil
}

func mb(n uint64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

// ErrScope reports that something outside the exposed port answered.
var ErrScope = errors.New("scope check failed")

// startRelay starts relay on s's addresses and waits until it is ready.
func startRelay(ctx context.Context, s *setup, bins map[string]string, procs *[]*proc) error {
	p, err := start("relay", s.dir, bins["relay"], "serve", "--db", s.path("relay.db"), "--listen", s.relayQUIC, "--http", s.relayHTTP,
		"--admin", s.relayAdmin, "--identity-cert", s.path("relay-id", "identity.crt"), "--identity-key", s.path("relay-id", "identity.key"),
		"--workers", s.path("workers.yaml"), "--producers", s.path("producers.yaml"), "--lease-duration", "10s")
	if err != nil {
		return err
	}
	*procs = append(*procs, p)
	return waitReady(ctx, p, "http://"+s.relayAdmin+"/readyz", 20*time.Second)
}

// startAll writes s's files and starts relay, the gateways and bunny,
// adding each to procs as it starts, and waits for each to be ready.
func startAll(ctx context.Context, s *setup, bins map[string]string, procs *[]*proc) error {
	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("creating the demo's directory: %w", err)
	}
	if err := s.write(); err != nil {
		return err
	}
	run := func(name, ready string, exe string, args ...string) error {
		p, err := start(name, s.dir, exe, args...)
		if err != nil {
			return err
		}
		*procs = append(*procs, p)
		return waitReady(ctx, p, "http://"+ready+"/readyz", 20*time.Second)
	}
	if err := startRelay(ctx, s, bins, procs); err != nil {
		return err
	}
	if err := run("gateway-aks", s.aksAdmin, bins["tunnel"], "gateway", "--config", s.path("aks.yaml")); err != nil {
		return err
	}
	if err := run("gateway-eks", s.eksAdmin, bins["tunnel"], "gateway", "--config", s.path("eks.yaml")); err != nil {
		return err
	}
	return run("bunny", s.bunnyAdmin, bins["bunny"], "run", "--config", s.path("bunny.yaml"))
}
