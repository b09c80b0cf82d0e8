package main

import (
	"context"
	"errors"
	"time"

	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/cli"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

type gatewayCmd struct {
	Config       string        `short:"c" required:"" placeholder:"FILE" help:"Gateway config file (YAML, see docs/gateway-config.md)."`
	DrainTimeout time.Duration `default:"10s" help:"On SIGTERM, how long TCP flows in flight may take to finish."`
	cli.Logging
}

func (c *gatewayCmd) Run(ctx context.Context, env cli.Env) error {
	log := c.Logger(env.Stderr)
	cfg, err := config.Load(c.Config)
	if err != nil {
		return cli.Usage(err)
	}
	gw := &tunnel.Gateway{Config: cfg, Logger: log, DrainTimeout: c.DrainTimeout}
	if err := gw.Start(ctx); err != nil {
		if errors.Is(err, tunnel.ErrBadConfig) {
			return cli.Usage(err)
		}
		return err
	}
	<-ctx.Done()
	log.Info("signal received; draining", "timeout", c.DrainTimeout.String())
	return gw.Shutdown(context.Background())
}
