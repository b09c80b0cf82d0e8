package main

import (
	"context"
	"fmt"

	"github.com/tunnel-dev/tunnel/bunny/config"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
)

type configCheckCmd struct {
	File    string `arg:"" placeholder:"FILE" help:"bunny's configuration file."`
	Offline bool   `help:"Check the file alone, without reading the identity and pin files it names (as in CI, where the keys live in a cluster)."`
	// The shipped manifests mark each value to edit with REPLACE.
	AllowPlaceholders bool `help:"With --offline, let values marked REPLACE through (a check of the unedited manifests)."`
}

func (c *configCheckCmd) Run(_ context.Context, env cli.Env) error {
	opts, err := yamlcheck.CheckOptions(c.Offline, c.AllowPlaceholders)
	if err != nil {
		return cli.Usage(err)
	}
	load := config.Load
	switch {
	case opts.AllowPlaceholders:
		load = config.LoadTemplate
	case c.Offline:
		load = config.LoadOffline
	}
	cfg, err := load(c.File)
	if err != nil {
		return cli.Usage(err)
	}
	fmt.Fprintf(env.Stdout, "%s: valid\n\n", c.File)
	cfg.Describe(env.Stdout)
	return nil
}
