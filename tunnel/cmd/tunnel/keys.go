package main

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/tunnel/cli"
)

type keysCmd struct {
	Generate keysGenerateCmd `cmd:"" help:"Generate a WireGuard key pair into a directory (private.key 0600, public.key) and print the public key."`
	Public   keysPublicCmd   `cmd:"" help:"Print the public key of a private key file (or of a key on standard input)."`
	Identity keysIdentityCmd `cmd:"" help:"Generate a QUIC identity (identity.key 0600, identity.crt) into a directory and print its pin."`
	Pin      keysPinCmd      `cmd:"" help:"Print the pin (sha256/…) of an identity certificate, as relay's workers file wants it."`
}

type keysGenerateCmd struct {
	OutDir string `required:"" type:"path" placeholder:"DIR" help:"Directory to write private.key and public.key into (created 0700 if missing)."`
	Force  bool   `help:"Replace an existing private key (the old one stops working)."`
}

func (c *keysGenerateCmd) Run(_ context.Context, env cli.Env) error {
	pub, err := keys.WriteKeyPair(c.OutDir, c.Force)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, pub)
	return nil
}

type keysPublicCmd struct {
	File string `arg:"" optional:"" default:"-" placeholder:"FILE" help:"Private key file; - (the default) reads standard input."`
}

func (c *keysPublicCmd) Run(_ context.Context, env cli.Env) error {
	var k keys.PrivateKey
	var err error
	if c.File == "-" {
		b, rerr := io.ReadAll(io.LimitReader(os.Stdin, 4096))
		if rerr != nil {
			return fmt.Errorf("reading standard input: %w", rerr)
		}
		k, err = keys.ParsePrivateKey(string(b))
	} else {
		k, err = keys.LoadPrivateKey(c.File)
	}
	if err != nil {
		return cli.Usage(err)
	}
	fmt.Fprintln(env.Stdout, k.Public())
	return nil
}

type keysIdentityCmd struct {
	Name   string `required:"" help:"The identity's name: the worker name relay authorises (or relay's own name)."`
	OutDir string `required:"" type:"path" placeholder:"DIR" help:"Directory to write identity.key and identity.crt into."`
	Force  bool   `help:"Replace an existing identity (its pin stops working)."`
}

func (c *keysIdentityCmd) Run(_ context.Context, env cli.Env) error {
	pin, err := keys.WriteIdentity(c.OutDir, c.Name, c.Force)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, pin)
	return nil
}

type keysPinCmd struct {
	Cert string `arg:"" placeholder:"CERT" help:"PEM certificate file (identity.crt)."`
}

func (c *keysPinCmd) Run(_ context.Context, env cli.Env) error {
	pin, err := keys.LoadCertificatePin(c.Cert)
	if err != nil {
		return cli.Usage(err)
	}
	fmt.Fprintln(env.Stdout, pin)
	return nil
}
