package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/config"
	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/bunny/worker"
	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/keys"
)

type runCmd struct {
	Config       string  `required:"" type:"path" placeholder:"FILE" help:"Configuration file (see docs/examples/bunny.yaml)."`
	RelayAddress string  `placeholder:"HOST:PORT" help:"Override relay.address: relay's UDP host:port (the local gateway's forward port)."`
	RelayPin     string  `placeholder:"sha256/..." help:"Override relay.pin (and pinFile): relay's identity pin."`
	AdminListen  *string `placeholder:"ADDR" help:"Override admin.listen: /metrics, /healthz, /readyz, /status (bunny status); \"\" disables."`
	Concurrency  int     `placeholder:"N" help:"Override concurrency: the most jobs held at once."`
	cli.Logging
}

// load reads the file and applies the flags; every error is the user's.
func (c *runCmd) load() (*config.Config, keys.Identity, error) {
	cfg, err := config.LoadOffline(c.Config)
	if err != nil {
		return nil, keys.Identity{}, err
	}
	if c.RelayAddress != "" {
		host, port, err := net.SplitHostPort(c.RelayAddress)
		if p, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || p < 1 || p > 65535 {
			return nil, keys.Identity{}, fmt.Errorf("--relay-address %q: want host:port", c.RelayAddress)
		}
		cfg.Relay.Address, cfg.Relay.Addresses = c.RelayAddress, []string{c.RelayAddress}
	}
	if c.RelayPin != "" {
		pin, err := keys.ParsePin(c.RelayPin)
		if err != nil {
			return nil, keys.Identity{}, fmt.Errorf("--relay-pin: %w", err)
		}
		cfg.Relay.Pin, cfg.Relay.PinFile = pin, ""
	}
	if c.AdminListen != nil {
		if *c.AdminListen != "" {
			if _, port, err := net.SplitHostPort(*c.AdminListen); err != nil || port == "" {
				return nil, keys.Identity{}, fmt.Errorf("--admin-listen %q: want host:port, or \"\" to disable", *c.AdminListen)
			}
		}
		cfg.Admin.Listen = *c.AdminListen
	}
	if c.Concurrency != 0 {
		if c.Concurrency < 1 || c.Concurrency > config.MaxConcurrency {
			return nil, keys.Identity{}, fmt.Errorf("--concurrency %d: want 1 to %d", c.Concurrency, config.MaxConcurrency)
		}
		cfg.Concurrency = c.Concurrency
	}
	if err := cfg.ResolveFiles(); err != nil {
		return nil, keys.Identity{}, fmt.Errorf("%s: %w", c.Config, err)
	}
	id, err := keys.LoadIdentity(cfg.Identity.CertFile, cfg.Identity.KeyFile)
	if err != nil {
		return nil, keys.Identity{}, fmt.Errorf("identity: %w", err)
	}
	return cfg, id, nil
}

// handlers builds each queue's handler; exec handlers share the reaper.
func handlers(cfg *config.Config, reaper *handler.Reaper) map[string]handler.Handler {
	hs := make(map[string]handler.Handler, len(cfg.Queues))
	for _, q := range cfg.Queues {
		switch {
		case q.Exec != nil:
			hs[q.Name] = &handler.Exec{Command: q.Exec.Command, Timeout: q.Exec.Timeout, MaxOutput: q.Exec.MaxOutput,
				PassEnv: q.Exec.Env, Reaper: reaper}
		case q.HTTP != nil:
			hs[q.Name] = &handler.HTTP{URL: q.HTTP.URL, Timeout: q.HTTP.Timeout, MaxOutput: q.HTTP.MaxOutput}
		}
	}
	return hs
}

func (c *runCmd) Run(ctx context.Context, env cli.Env) error {
	log := c.Logger(env.Stderr)
	cfg, id, err := c.load()
	if err != nil {
		return cli.Usage(err)
	}
	grace := cfg.ShutdownGrace
	if grace == 0 {
		grace = -1 // worker.Options: negative is none, zero the default
	}
	build := buildinfo.Read()
	// Every exec handler's descendants end with its job, even those that
	// left its process group.
	reaper, err := handler.NewReaper()
	if err != nil {
		return err
	}
	reg := admin.NewRegistry()
	reg.MustRegister(build.Collector("bunny"))
	w, err := worker.New(worker.Options{
		Addrs:         cfg.Relay.Addresses,
		Identity:      id,
		RelayPin:      cfg.Relay.Pin,
		Handlers:      handlers(cfg, reaper),
		Concurrency:   cfg.Concurrency,
		ShutdownGrace: grace,
		Logger:        log,
		Registerer:    reg,
	})
	if err != nil {
		return cli.Usage(err)
	}
	// The admin server outlives the drain, so the drain can be watched.
	adm, err := admin.Start(context.Background(), admin.Options{Addr: cfg.Admin.Listen, Registry: reg, Ready: w.Ready, Logger: log,
		Handlers: map[string]http.Handler{"/status": statusHandler(build, id, cfg.Relay.Pin, w)}})
	if err != nil {
		return err
	}
	defer adm.Close()
	queues := make([]string, len(cfg.Queues))
	for i, q := range cfg.Queues {
		queues[i] = q.Name
	}
	log.Info("bunny started", "version", build.Version, "revision", build.Revision, "relay", cfg.Relay.Address, "relayPin", cfg.Relay.Pin.String(),
		"worker", id.Name(), "pin", id.Pin().String(), "queues", queues, "concurrency", cfg.Concurrency,
		"shutdownGrace", cfg.ShutdownGrace.String())
	start := time.Now()
	if err := w.Run(ctx); err != nil {
		return err
	}
	log.Info("bunny exiting", "uptime", time.Since(start).Round(time.Second).String())
	return nil
}
