package gatewaycmd

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/memlimit"
	"github.com/tunnel-dev/tunnel/tunnel"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

// Command runs a gateway until its context ends, then drains it.
type Command struct {
	Config       string        `short:"c" required:"" placeholder:"FILE" help:"Gateway config file (YAML, see docs/gateway-config.md)."`
	DrainTimeout time.Duration `default:"10s" help:"On SIGTERM, how long TCP flows in flight may take to finish."`
	ReloadEvery  time.Duration `default:"1s" help:"How often to check the config and key files for changes (SIGHUP reloads at once, changed or not); 0 turns reloading off."`
	cli.Logging
}

// Run runs the gateway. A config that does not load or does not validate
// is a usage error (exit 2): nothing started.
func (c *Command) Run(ctx context.Context, env cli.Env) error {
	log := c.Logger(env.Stderr)
	if limit, from, err := memlimit.FromCgroup(); err != nil {
		log.Warn("no Go memory limit from the cgroup", "err", err)
	} else if limit > 0 {
		log.Info("Go memory limit set", "bytes", limit, "from", from)
	}
	log.Debug("garbage collector", "setting", memlimit.TightenGC())
	cfg, err := config.Load(c.Config)
	if err != nil {
		return cli.Usage(err)
	}
	build := buildinfo.Read()
	reg := admin.NewRegistry()
	reg.MustRegister(build.Collector("tunnel"))
	log.Info("tunnel gateway starting", "version", build.Version, "revision", build.Revision)
	gw := &tunnel.Gateway{Logger: log, DrainTimeout: c.DrainTimeout, Registry: reg}
	if err := gw.Start(ctx, cfg); err != nil {
		if errors.Is(err, tunnel.ErrBadConfig) {
			return cli.Usage(err)
		}
		return err
	}
	var watching sync.WaitGroup
	if c.ReloadEvery > 0 {
		watching.Add(2)
		w := &tunnel.Watcher{Gateway: gw, Path: c.Config, Every: c.ReloadEvery, Logger: log}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		go func() {
			defer watching.Done()
			for {
				select {
				case <-hup:
					w.Trigger()
				case <-ctx.Done():
					return
				}
			}
		}()
		go func() {
			defer watching.Done()
			w.Run(ctx)
		}()
	}
	<-ctx.Done()
	// A reload in progress finishes before the drain begins, so none
	// overlaps the teardown.
	watching.Wait()
	log.Info("signal received; draining", "timeout", c.DrainTimeout.String())
	return gw.Shutdown(context.Background())
}
