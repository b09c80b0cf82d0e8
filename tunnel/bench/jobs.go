package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tunnel-dev/tunnel/internal/leaseloop"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/client"
	"github.com/tunnel-dev/tunnel/relay/producers"
)

// JobsResult is relay's job throughput and latency on one path: jobs go
// enqueue (producer API) → lease → complete (QUIC, 64 in flight), with
// relay durable (every change fsync'd).
type JobsResult struct {
	Path string `json:"path"`
	// JobsPerSecond at saturation: the producer keeps a backlog.
	JobsPerSecond float64 `json:"jobs_per_second"`
	InFlight      int     `json:"in_flight"`
	// P50 and P99 are enqueue-to-completion latencies with the producer
	// paced at half the saturated rate.
	P50  time.Duration `json:"p50_ns"`
	P99  time.Duration `json:"p99_ns"`
	Jobs int           `json:"jobs"`
	Err  string        `json:"error,omitempty"`
}

// JobsStore is where relay keeps jobs in a jobs measurement.
type JobsStore struct {
	// DSN, if set, is a PostgreSQL database (postgres:// URL) for the
	// PostgreSQL rows; it may hold a password, so it goes to relay in a
	// 0600 file and is never printed. Each run uses queues of its own.
	DSN string
	// Replicas are the replica counts to measure on PostgreSQL (1 and 3,
	// say), each beside the embedded store in the same run.
	Replicas []int
}

// relaySetup is what the relay replicas of one measurement share: the
// identities, the workers and producers files, the DSN file.
type relaySetup struct {
	dir      string
	relayPin keys.Pin
	worker   keys.Identity
	token    string
	dsnFile  string // "" for the embedded store
	queues   [2]string
}

func newRelaySetup(dsn string) (*relaySetup, error) {
	dir, err := os.MkdirTemp("", "tunnel-bench-relay-")
	if err != nil {
		return nil, err
	}
	s := &relaySetup{dir: dir}
	fail := func(err error) (*relaySetup, error) { s.Close(); return nil, err }
	// Queues of their own: a database may hold earlier runs' backlogs.
	var b [4]byte
	_, _ = rand.Read(b[:])
	s.queues = [2]string{"bench-" + hex.EncodeToString(b[:]), "bench-paced-" + hex.EncodeToString(b[:])}
	if s.relayPin, err = keys.WriteIdentity(filepath.Join(dir, "relay"), "relay", false); err != nil {
		return fail(err)
	}
	wpin, err := keys.WriteIdentity(filepath.Join(dir, "worker"), "bench", false)
	if err != nil {
		return fail(err)
	}
	if s.worker, err = keys.LoadIdentity(filepath.Join(dir, "worker", keys.IdentityCertFile), filepath.Join(dir, "worker", keys.IdentityKeyFile)); err != nil {
		return fail(err)
	}
	workers := fmt.Sprintf("workers:\n  - name: bench\n    pins: [%s]\n    queues:\n      %s: [lease, heartbeat, complete, fail]\n      %s: [lease, heartbeat, complete, fail]\n", wpin, s.queues[0], s.queues[1])
	if err := os.WriteFile(filepath.Join(dir, "workers.yaml"), []byte(workers), 0o600); err != nil {
		return fail(err)
	}
	if s.token, err = producers.NewFile(filepath.Join(dir, "producers.yaml"), "bench", s.queues[0], s.queues[1]); err != nil {
		return fail(err)
	}
	if dsn != "" {
		s.dsnFile = filepath.Join(dir, "store.dsn")
		if err := os.WriteFile(s.dsnFile, []byte(dsn), 0o600); err != nil {
			return fail(err)
		}
	}
	return s, nil
}

func (s *relaySetup) Close() { os.RemoveAll(s.dir) }

// relayProc is one relay process.
type relayProc struct {
	cmd  *exec.Cmd
	quic string
	api  *api.Client
}

// startRelay starts replica i of setup s.
func startRelay(ctx context.Context, exe string, s *relaySetup, i int) (*relayProc, error) {
	r := &relayProc{}
	fail := func(err error) (*relayProc, error) { r.Close(); return nil, err }
	quicPort, err := freeUDP()
	if err != nil {
		return fail(err)
	}
	httpAddr, err := freeTCP()
	if err != nil {
		return fail(err)
	}
	adminAddr, err := freeTCP()
	if err != nil {
		return fail(err)
	}
	r.quic = quicPort
	store := []string{"--db", filepath.Join(s.dir, fmt.Sprintf("relay%d.db", i))}
	if s.dsnFile != "" {
		store = []string{"--store-file", s.dsnFile}
	}
	args := append([]string{"serve"}, store...)
	args = append(args, "--listen", quicPort, "--http", httpAddr,
		"--identity-cert", filepath.Join(s.dir, "relay", keys.IdentityCertFile), "--identity-key", filepath.Join(s.dir, "relay", keys.IdentityKeyFile),
		"--workers", filepath.Join(s.dir, "workers.yaml"), "--log-level", "warn",
		"--admin", adminAddr, "--producers", filepath.Join(s.dir, "producers.yaml"))
	r.cmd = exec.CommandContext(ctx, exe, args...)
	if err := r.cmd.Start(); err != nil {
		return fail(fmt.Errorf("starting relay: %w", err))
	}
	r.api = &api.Client{BaseURL: "https://" + httpAddr, HTTP: api.HTTPClient(api.ClientTLS(s.relayPin, nil), 30*time.Second), Token: s.token}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return r, nil
			}
		}
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("relay not ready after 15s"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *relayProc) Close() {
	if r.cmd != nil && r.cmd.Process != nil {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	}
}

func freeUDP() (string, error) {
	pc, err := netListenPacket()
	if err != nil {
		return "", err
	}
	defer pc.Close()
	return pc.LocalAddr().String(), nil
}

// jobRun drives jobs through relay replicas at addrs: a producer on the
// replicas' APIs in turn, and inFlight worker slots spread over one QUIC
// connection per replica, each connection's slots leasing and completing
// as bunny's do (leaseLoop).
type jobRun struct {
	setup    *relaySetup
	relays   []*relayProc
	addrs    []string
	queue    string
	inFlight int
	seq      atomic.Int64
}

// run enqueues and works jobs for d. With rate zero the producer keeps a
// backlog (saturation); otherwise it enqueues rate jobs a second. It
// returns the jobs completed and their enqueue-to-completion latencies.
func (j *jobRun) run(ctx context.Context, d time.Duration, rate float64) (int, []time.Duration, error) {
	var cs []*client.Client
	defer func() {
		for _, c := range cs {
			c.Close()
		}
	}()
	for _, addr := range j.addrs {
		c, err := client.Dial(ctx, client.Options{Addr: addr, Identity: j.setup.worker, RelayPin: j.setup.relayPin})
		if err != nil {
			return 0, nil, fmt.Errorf("dialling relay at %s: %w", addr, err)
		}
		cs = append(cs, c)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	end := time.Now().Add(d)
	// over reports a call cut short by the end of the run, not failed.
	over := func() bool { return ctx.Err() != nil || !time.Now().Before(end.Add(-50*time.Millisecond)) }

	var mu sync.Mutex
	enqueued := map[string]time.Time{}
	var lat []time.Duration
	var done, queued atomic.Int64
	var firstErr error
	setErr := func(err error) {
		mu.Lock()
		if firstErr == nil && !over() {
			firstErr = err
		}
		mu.Unlock()
		cancel()
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // the producer
		defer wg.Done()
		const batch = 100
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		start := time.Now()
		for k := 0; ctx.Err() == nil; k++ {
			n := batch
			if rate > 0 {
				want := int64(rate * time.Since(start).Seconds())
				n = int(want - queued.Load())
				if n <= 0 {
					select {
					case <-tick.C:
					case <-ctx.Done():
					}
					continue
				}
				n = min(n, batch)
			} else if queued.Load()-done.Load() > 4*int64(j.inFlight)+1000 {
				select {
				case <-tick.C:
				case <-ctx.Done():
				}
				continue
			}
			reqs := make([]api.JobRequest, n)
			for i := range reqs {
				reqs[i] = api.JobRequest{Queue: j.queue, PayloadText: fmt.Sprintf("job %d", j.seq.Add(1))}
			}
			jobs, err := j.relays[k%len(j.relays)].api.EnqueueBatch(ctx, reqs)
			now := time.Now()
			if err != nil {
				setErr(fmt.Errorf("enqueueing: %w", err))
				return
			}
			mu.Lock()
			for _, job := range jobs {
				enqueued[job.ID] = now
			}
			mu.Unlock()
			queued.Add(int64(len(jobs)))
		}
	}()
	finished := func(job client.Job) {
		now := time.Now()
		done.Add(1)
		mu.Lock()
		if t, ok := enqueued[job.ID]; ok {
			lat = append(lat, now.Sub(t))
			delete(enqueued, job.ID)
		}
		mu.Unlock()
	}
	for i, c := range cs {
		slots := j.inFlight / len(cs)
		if i < j.inFlight%len(cs) {
			slots++
		}
		wg.Go(func() {
			if err := leaseloop.Run(ctx, c, j.queue, slots, finished); err != nil {
				setErr(err)
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return 0, nil, firstErr
	}
	return int(done.Load()), lat, nil
}

// measureJobs measures one path: direct to relay, or through two gateway
// processes; on the embedded store, or with dsn set on PostgreSQL with
// replicas relay processes.
func measureJobs(ctx context.Context, o Options, relayExe string, throughTunnel bool, dsn string, replicas int) JobsResult {
	res := JobsResult{Path: "direct to relay", InFlight: 64}
	if throughTunnel {
		res.Path = "through the tunnel"
	}
	if dsn != "" {
		res.Path += fmt.Sprintf(", PostgreSQL, %d replica(s)", replicas)
	} else {
		replicas = 1
	}
	s, err := newRelaySetup(dsn)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	defer s.Close()
	var relays []*relayProc
	defer func() {
		for _, r := range relays {
			r.Close()
		}
	}()
	var addrs []string
	for i := range replicas {
		r, err := startRelay(ctx, relayExe, s, i)
		if err != nil {
			res.Err = err.Error()
			return res
		}
		relays = append(relays, r)
		addrs = append(addrs, r.quic)
	}
	if throughTunnel {
		p, err := startPath(ctx, o, Tunnel, "127.0.0.1:1", relays[0].quic)
		if err != nil {
			res.Err = err.Error()
			return res
		}
		defer p.Close()
		addrs = []string{p.aks.ready.UDPForward}
	}
	// Each run has a queue of its own: the saturated run leaves a backlog
	// behind, which the paced run's jobs must not queue behind.
	jr := &jobRun{setup: s, relays: relays, addrs: addrs, queue: s.queues[0], inFlight: res.InFlight}
	n, _, err := jr.run(ctx, o.Duration, 0)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.JobsPerSecond = float64(n) / o.Duration.Seconds()
	jr = &jobRun{setup: s, relays: relays, addrs: addrs, queue: s.queues[1], inFlight: res.InFlight}
	n, lat, err := jr.run(ctx, o.Duration, res.JobsPerSecond/2)
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.Jobs = n
	if len(lat) > 0 {
		sort.Slice(lat, func(i, k int) bool { return lat[i] < lat[k] })
		res.P50, res.P99 = lat[len(lat)/2], lat[len(lat)*99/100]
	}
	return res
}
