package main

import (
	"context"
	"fmt"
	"slices"

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
	var self *keys.PublicKey
	if !c.Offline {
		k, err := keys.LoadPrivateKey(cfg.Interface.PrivateKeyFile)
		if err != nil {
			return cli.Usage(fmt.Errorf("%s: interface.privateKeyFile: %w (use --offline to check the file alone)", c.File, err))
		}
		pub := k.Public()
		self = &pub
		for _, p := range cfg.Peers {
			if slices.Contains(p.Keys(), pub) {
				return cli.Usage(fmt.Errorf("%s: peer %q has this gateway's own public key", c.File, p.Name))
			}
			if p.PresharedKeyFile != "" {
				if _, err := keys.LoadPresharedKey(p.PresharedKeyFile); err != nil {
					return cli.Usage(fmt.Errorf("%s: peer %q presharedKeyFile: %w", c.File, p.Name, err))
				}
			}
		}
	}
	fmt.Fprintf(env.Stdout, "%s: valid\n\n", c.File)
	config.Describe(env.Stdout, cfg, self)
	return nil
}
