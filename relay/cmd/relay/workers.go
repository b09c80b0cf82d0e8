package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/relay/auth"
)

type workersCmd struct {
	Check workersCheckCmd `cmd:"" help:"Check a workers file (or directory) as relay serve reads it, and print who may do what."`
}

type workersCheckCmd struct {
	Path string `arg:"" placeholder:"FILE|DIR" help:"The workers file, or a directory of *.yaml and *.yml files (as relay serve's --workers)."`
	// A workers file names no other file: --offline only pairs with
	// --allow-placeholders, as in the gateway's and bunny's checks.
	Offline           bool `help:"Check the file alone, as CI does (a workers file names no other file, so this changes nothing by itself)."`
	AllowPlaceholders bool `help:"With --offline, let values marked REPLACE through (a check of the unedited manifests)."`
}

func (c *workersCheckCmd) Run(_ context.Context, env cli.Env) error {
	load, err := yamlcheck.CheckLoader(c.Offline, c.AllowPlaceholders, auth.Load, auth.Load, auth.LoadTemplate)
	if err != nil {
		return cli.Usage(err)
	}
	cfg, err := load(c.Path)
	if err != nil {
		return cli.Usage(err)
	}
	fmt.Fprintf(env.Stdout, "%s: valid\n\n", c.Path)
	describeWorkers(env.Stdout, cfg)
	return nil
}

// describeWorkers says, per worker, which keys it may present and what it
// may do on each queue; everything else is refused.
func describeWorkers(w io.Writer, cfg *auth.Config) {
	for _, wk := range cfg.Workers {
		pins := make([]string, len(wk.Pins))
		for i, p := range wk.Pins {
			pins[i] = p.String()
		}
		fmt.Fprintf(w, "worker %s (keys %s)\n", wk.Name, strings.Join(pins, ", "))
		for _, q := range slices.Sorted(maps.Keys(wk.Queues)) {
			as := make([]string, len(wk.Queues[q]))
			for i, a := range wk.Queues[q] {
				as[i] = string(a)
			}
			fmt.Fprintf(w, "  may %s on queue %s\n", strings.Join(as, ", "), q)
		}
	}
	fmt.Fprintln(w, "\nrelay refuses any other key, and any queue or action not listed.")
}
