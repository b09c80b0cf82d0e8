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
	load, err := yamlcheck.CheckLoader(c.Offline, c.AllowPlaceholders, config.Load, config.LoadOffline, config.LoadTemplate)
	if err != nil {
		return cli.Usage(err)
	}
	cfg, err := load(c.File)
	if err != nil {
		return cli.Usage(err)
	}
	fmt.Fprintf(env.Stdout, "%s: valid\n\n", c.File)
	cfg.Describe(env.Stdout)
	return nil
}
