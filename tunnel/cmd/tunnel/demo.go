package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/tunnel/demo"
)

type demoCmd struct {
	Jobs        int           `default:"2000" help:"Jobs to submit."`
	PayloadSize int           `default:"1024" help:"Bytes of random payload per job."`
	Concurrency int           `default:"16" help:"bunny's job slots."`
	Timeout     time.Duration `default:"1m" help:"Give up after this long."`
	BinDir      string        `placeholder:"DIR" help:"Where the relay and bunny binaries are (default: beside this tunnel binary, then PATH)."`
	Keep        bool          `help:"Keep the temporary directory: keys, configs and each process's log."`
	HA          bool          `name:"ha" help:"Two gateways a side, each with its own key; kill the one bunny uses (SIGKILL) half-way, restart it, and print the pause between handled jobs and how long it took to rejoin."`
	cli.Logging
}

// Run starts relay, both gateways and bunny as processes on loopback, runs
// a batch of jobs through the tunnel, checks them and proves the scope.
func (c *demoCmd) Run(ctx context.Context, env cli.Env) error {
	if c.Jobs <= 0 || c.Jobs > 1_000_000 {
		return cli.Usage(fmt.Errorf("--jobs must be between 1 and 1000000, not %d", c.Jobs))
	}
	if c.PayloadSize <= 0 || c.PayloadSize > 1<<20 {
		return cli.Usage(fmt.Errorf("--payload-size must be between 1 and 1048576 bytes, not %d", c.PayloadSize))
	}
	if c.Concurrency <= 0 || c.Concurrency > 1024 {
		return cli.Usage(fmt.Errorf("--concurrency must be between 1 and 1024, not %d", c.Concurrency))
	}
	dir := c.BinDir
	if dir == "" {
		if exe, err := os.Executable(); err == nil {
			dir = filepath.Dir(exe)
		}
	}
	_, err := demo.Run(ctx, demo.Options{
		BinDir: dir, Jobs: c.Jobs, PayloadSize: c.PayloadSize, Concurrency: c.Concurrency,
		Timeout: c.Timeout, Keep: c.Keep, HA: c.HA, Out: env.Stdout, Logger: c.Logger(env.Stderr),
	})
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	fmt.Fprintln(env.Stdout, "demo ok")
	return nil
}
