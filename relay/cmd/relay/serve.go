package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/memlimit"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/server"
)

type serveCmd struct {
	DB           string        `default:"relay.db" placeholder:"FILE" help:"The job store: one bbolt file, created 0600, relative to the working directory unless absolute; its directory must exist."`
	Listen       string        `default:":7443" placeholder:"ADDR" help:"UDP address workers reach over QUIC (the port the tunnel exposes)."`
	HTTP         string        `name:"http" default:"127.0.0.1:8080" placeholder:"ADDR" help:"Producer API address: HTTPS with relay's identity, /v1/ only. Never expose it through the tunnel."`
	IdentityCert string        `required:"" type:"path" placeholder:"FILE" help:"relay's QUIC certificate (identity.crt from tunnel keys identity); workers pin its key."`
	IdentityKey  string        `required:"" type:"path" placeholder:"FILE" help:"relay's QUIC private key file (identity.key, mode 0600 or 0400)."`
	Workers      string        `required:"" type:"path" placeholder:"PATH" help:"Workers file, or a directory of *.yaml files: which worker pins may do what on which queue."`
	WorkersCheck time.Duration `default:"2s" help:"How often to compare the workers file's contents and reload it (SIGHUP reloads at once)."`

	Admin          string        `default:"127.0.0.1:9090" placeholder:"ADDR" help:"Admin HTTP address: /metrics, /healthz, /readyz (no producer API), for probes and monitoring."`
	Producers      string        `required:"" type:"path" placeholder:"PATH" help:"Producers file, or a directory of *.yaml files: which client-certificate pins and token hashes may enqueue, read, cancel, retry on which queue (relay producers token makes a token)."`
	ProducersCheck time.Duration `default:"2s" help:"How often to compare the producers files' contents and reload them (SIGHUP reloads at once)."`

	MaxProducerConns int `default:"16" help:"Most producer API connections one producer may hold open, and one source address before its connections authenticate; past it a connection gets 429, or is closed before TLS."`

	LeaseDuration time.Duration `default:"30s" help:"Lease duration of a job whose producer set none."`
	MaxAttempts   uint32        `default:"25" help:"Attempts of a job whose producer set none; after the last it is dead."`
	BackoffBase   time.Duration `default:"1s" help:"Backoff after a job's first failed attempt; it doubles per attempt, with jitter."`
	BackoffMax    time.Duration `default:"10m" help:"Longest backoff between attempts."`
	MaxWait       time.Duration `default:"60s" help:"Longest a worker's long poll is held."`
	MaxPayload    int           `default:"1048576" help:"Largest job payload, in bytes (at most 1 MiB)."`
	MaxResult     int           `default:"1048576" help:"Largest job result, in bytes (at most 1 MiB)."`
	MaxLiveJobs   int           `default:"2000000" help:"Most unfinished jobs relay holds; enqueues past it get 429. Each costs ~130 bytes of memory (an index entry; its payload is on disk): the default, full, is about a third of the shipped 1Gi pod limit (docs/relay.md)."`
	MaxLiveBytes  int64         `default:"1073741824" help:"Most payload bytes of unfinished jobs relay holds; enqueues past it get 429. Payloads are on disk, not in memory: the default (1 GiB) bounds the backlog's share of the volume (10Gi shipped)."`
	MaxLeases     int           `default:"1000" help:"Most leases one worker may hold at once."`
	Retain        retention     `default:"7d" help:"How long succeeded, dead and cancelled jobs and their idempotency keys are kept (7d, 36h; 0 keeps them); pruned in batches, on either store."`

	PacketSize       uint16        `default:"1372" help:"QUIC UDP payload size: the tunnel's inner MTU (1420) less 48, so no packet is fragmented."`
	PathMTUDiscovery bool          `name:"pmtud" help:"Let QUIC probe for larger packets (off: inside the tunnel the size is known)."`
	KeepAlive        time.Duration `default:"5s" help:"QUIC keep-alive interval; keep it below the gateway's UDP idle expiry (120s)."`
	IdleTimeout      time.Duration `default:"15s" help:"Close a QUIC connection whose worker stopped answering after this long (bunny's is 15s too; the shorter of the two applies)."`
	MaxStreams       int64         `default:"256" help:"Concurrent calls one worker connection may have open."`
	DrainTimeout     time.Duration `default:"10s" help:"On SIGTERM, how long calls in flight may take to finish."`

	storeFlags
	ResetKeyFile string `type:"path" placeholder:"FILE" help:"QUIC stateless-reset secret (at least 32 bytes) shared by relay replicas, so a worker whose replica died learns it at its next packet. Default: derived from the identity key, which replicas share too."`
	cli.Logging
}

func (c *serveCmd) validate() error {
	switch {
	case c.MaxPayload < 1 || c.MaxPayload > proto.MaxPayload:
		return fmt.Errorf("--max-payload %d: want 1 to %d bytes", c.MaxPayload, proto.MaxPayload)
	case c.MaxResult < 1 || c.MaxResult > proto.MaxPayload:
		return fmt.Errorf("--max-result %d: want 1 to %d bytes", c.MaxResult, proto.MaxPayload)
	case c.LeaseDuration < queue.MinLease || c.LeaseDuration > queue.MaxLease:
		return fmt.Errorf("--lease-duration %s: want %s to %s", c.LeaseDuration, queue.MinLease, queue.MaxLease)
	case c.MaxAttempts < 1 || c.MaxAttempts > queue.MaxAttemptsLimit:
		return fmt.Errorf("--max-attempts %d: want 1 to %d", c.MaxAttempts, queue.MaxAttemptsLimit)
	case c.BackoffBase <= 0 || c.BackoffMax < c.BackoffBase:
		return fmt.Errorf("--backoff-base %s, --backoff-max %s: want 0 < base <= max", c.BackoffBase, c.BackoffMax)
	case c.MaxWait <= 0:
		return fmt.Errorf("--max-wait %s: must be positive", c.MaxWait)
	case c.WorkersCheck <= 0:
		return fmt.Errorf("--workers-check %s: must be positive", c.WorkersCheck)
	case c.ProducersCheck <= 0:
		return fmt.Errorf("--producers-check %s: must be positive", c.ProducersCheck)
	case c.Admin == c.HTTP && !strings.HasSuffix(c.HTTP, ":0"):
		return fmt.Errorf("--admin and --http are both %s: the admin endpoints and the producer API need their own listeners", c.HTTP)
	case c.MaxLiveJobs < 1 || c.MaxLiveBytes < 1 || c.MaxLeases < 1:
		return errors.New("--max-live-jobs, --max-live-bytes and --max-leases must be positive")
	case c.MaxStreams < 1:
		return fmt.Errorf("--max-streams %d: must be positive", c.MaxStreams)
	case c.MaxProducerConns < 1:
		return fmt.Errorf("--max-producer-conns %d: must be positive", c.MaxProducerConns)
	}
	return c.quic().Validate()
}

func (c *serveCmd) quic() proto.QUICOptions {
	return proto.QUICOptions{
		PacketSize:         c.PacketSize,
		PathMTUDiscovery:   c.PathMTUDiscovery,
		KeepAlive:          c.KeepAlive,
		IdleTimeout:        c.IdleTimeout,
		MaxIncomingStreams: c.MaxStreams,
	}
}

func (c *serveCmd) Run(ctx context.Context, env cli.Env) error {
	log := c.Logger(env.Stderr)
	if err := c.validate(); err != nil {
		return cli.Usage(err)
	}
	// The garbage collector works harder near the pod's limit rather than
	// let the kernel kill relay.
	if limit, from, err := memlimit.FromCgroup(); err != nil {
		log.Warn("no Go memory limit from the cgroup", "err", err)
	} else if limit > 0 {
		log.Info("Go memory limit set", "bytes", limit, "from", from)
	}
	id, err := keys.LoadIdentity(c.IdentityCert, c.IdentityKey)
	if err != nil {
		return cli.Usage(fmt.Errorf("--identity-cert/--identity-key: %w", err))
	}
	build := buildinfo.Read()
	reg := admin.NewRegistry()
	reg.MustRegister(build.Collector("relay"))
	// The server is needed by the watcher's callback, and the watcher by
	// the server: the callback reads srv once both exist.
	var srvp atomic.Pointer[server.Server]
	wctx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	w, err := auth.Watch(wctx, auth.WatchOptions{
		Path: c.Workers, Every: c.WorkersCheck, Logger: log, Registerer: reg,
		OnChange: func(*auth.Config, []keys.Pin) {
			if srv := srvp.Load(); srv != nil {
				srv.Revoke()
			}
		},
	})
	if err != nil {
		return cli.Usage(fmt.Errorf("--workers: %w", err))
	}
	pw, err := producers.Watch(wctx, producers.WatchOptions{Path: c.Producers, Every: c.ProducersCheck, Logger: log, Registerer: reg})
	if err != nil {
		return cli.Usage(fmt.Errorf("--producers: %w", err))
	}
	dsn, err := c.dsn()
	if err != nil {
		return err
	}
	resetKey, err := readResetKey(c.ResetKeyFile)
	if err != nil {
		return err
	}
	q, storeErr, closeStore, err := c.openQueue(ctx, dsn, log, reg)
	if err != nil {
		return err
	}
	defer closeStore()
	if d, ok := q.(interface{ DeclareQueues(...string) }); ok {
		d.DeclareQueues(workerQueues(w.Config())...)
	}

	srv, err := server.New(server.Options{
		Queue: q, Identity: id, Workers: w.Config, QUIC: c.quic(),
		DrainTimeout: c.DrainTimeout, Logger: log, Registerer: reg, ResetKey: resetKey,
	})
	if err != nil {
		return cli.Usage(err)
	}
	srvp.Store(srv)
	h, err := api.NewHandler(api.Options{Queue: q, MaxPayload: c.MaxPayload, Producers: pw.Config, Logger: log, Registerer: reg})
	if err != nil {
		return err
	}
	apiSrv, err := api.Start(ctx, api.ServerOptions{Addr: c.HTTP, Identity: id, Handler: h, Logger: log, MaxConns: c.MaxProducerConns, Registerer: reg})
	if err != nil {
		return err
	}
	defer apiSrv.Close()
	kind, where := storeKind(c.DB, dsn)
	status := &statusSource{build: build, started: time.Now(), kind: kind, loc: where, quic: c.Listen, api: apiSrv.URL(), q: q, storeErr: storeErr, conns: srv.Connections}
	adm, err := admin.Start(ctx, admin.Options{Addr: c.Admin, Registry: reg, Ready: q.Ready, Logger: log,
		Handlers: map[string]http.Handler{"/status": status.handler()}})
	if err != nil {
		return err
	}
	defer adm.Close()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	sctx, stopServe := context.WithCancel(context.Background())
	defer stopServe()
	served := make(chan error, 1)
	go func() { served <- srv.ListenAndServe(sctx, c.Listen) }()
	log.Info("relay started", "version", build.Version, "revision", build.Revision, "store", where, "quic", c.Listen, "api", c.HTTP, "admin", c.Admin, "pin", id.Pin().String())

	health := time.NewTicker(time.Second)
	defer health.Stop()
	var failure error
loop:
	for {
		select {
		case <-ctx.Done():
			log.Info("signal received; draining", "timeout", c.DrainTimeout.String())
			break loop
		case <-hup:
			w.Check()
			pw.Check()
		case err := <-served:
			served = nil
			failure = err
			break loop
		case <-health.C:
			if err := storeErr(); err != nil {
				failure = fmt.Errorf("the store failed; exiting so that relay restarts from its file: %w", err)
				break loop
			}
		}
	}
	stopServe()
	if served != nil {
		if err := <-served; err != nil && failure == nil {
			failure = err
		}
	}
	return failure
}

// dbError names --db in a store that cannot be opened; a directory that
// is not there is the user's to fix (exit 2).
func dbError(path string, err error) error {
	err = fmt.Errorf("--db %s: %w (set --db or $RELAY_DB to a file in a directory that exists)", path, err)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return cli.Usage(err)
	}
	return err
}

// workerQueues lists the queues a workers file names, whose metrics then
// exist from the start.
func workerQueues(c *auth.Config) []string {
	var out []string
	for _, wk := range c.Workers {
		for name := range wk.Queues {
			out = append(out, name)
		}
	}
	return out
}
