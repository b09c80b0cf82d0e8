package main

import (
	"context"
	"fmt"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/yamlcheck"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/config"
)

type configCheckCmd struct {
	File    string `arg:"" placeholder:"FILE" help:"Gateway config file."`
	Offline bool   `help:"Check the file alone, without reading the key files it names (as in CI, where the keys live in a cluster)."`
	// The shipped manifests mark each value to edit with REPLACE.
	AllowPlaceholders bool `help:"With --offline, let values marked REPLACE through (a check of the unedited manifests)."`
}

func (c *configCheckCmd) Run(_ context.Context, env cli.Env) error {
	// The full check reads every file the gateway will, reporting every
	// problem in the config's format.
	var self *keys.PublicKey
	full := func(path string) (*config.Config, error) {
		return yamlcheck.LoadFile(path, config.MaxFileSize, config.Parse, func(cfg *config.Config) error {
			if err := config.ResolveFiles(cfg); err != nil {
				return err
			}
			pub, err := config.CheckKeys(cfg)
			self = &pub
			return err
		})
	}
	load, err := yamlcheck.CheckLoader(c.Offline, c.AllowPlaceholders, full, config.LoadOffline, config.LoadTemplate)
	if err != nil {
		return cli.Usage(err)
	}
	cfg, err := load(c.File)
	if err != nil {
		return cli.Usage(err)
	}
	fmt.Fprintf(env.Stdout, "%s: valid\n\n", c.File)
	config.Describe(env.Stdout, cfg, self)
	return nil
}
