package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/keys/kube"
	"github.com/tunnel-dev/tunnel/keys/rotate"
	"github.com/tunnel-dev/tunnel/keys/store"
)

type keysCmd struct {
	Generate keysGenerateCmd `cmd:"" envprefix:"GENERATE_" help:"Generate a WireGuard key pair into a directory (private.key 0600, public.key) and print the public key."`
	Public   keysPublicCmd   `cmd:"" help:"Print the public key of a private key file (or of a key on standard input)."`
	Identity keysIdentityCmd `cmd:"" envprefix:"IDENTITY_" help:"Generate a QUIC identity (identity.key 0600, identity.crt) into a directory and print its pin."`
	Pin      keysPinCmd      `cmd:"" help:"Print the pin (sha256/…) of an identity certificate, as relay's workers file wants it."`
	Rotate   keysRotateCmd   `cmd:"" envprefix:"ROTATE_" help:"Replace a gateway's WireGuard key with no moment without a working key: stage the new key at the peer, switch, confirm, revoke the old one. Resumable: run it again after any interruption."`
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

type keysRotateCmd struct {
	Store      string        `required:"" placeholder:"ADDR" help:"This side's key store, the gateway whose key is replaced: dir:PATH or secret:[CONTEXT/]NAMESPACE/NAME."`
	PeerStore  []string      `required:"" sep:"none" placeholder:"ADDR" help:"The peer gateway's key store, holding peer.NAME.pub for this side (only public keys are written to it): dir:PATH or secret:[CONTEXT/]NAMESPACE/NAME. Repeat it for every gateway replica of the other side: the new key is staged at all of them before this side switches, and the old one revoked at all of them."`
	Status     string        `placeholder:"URL|pod:…" help:"Where to read this side's gateway /status to confirm each step: its admin URL (http://127.0.0.1:9090, e.g. through kubectl port-forward) or pod:[CONTEXT/]NAMESPACE/LABEL-SELECTOR[:PORT] through the API server's pod proxy. Required unless --dry-run."`
	PeerStatus []string      `sep:"none" placeholder:"URL|pod:…" help:"The same for the peer's gateway; with several --peer-store, one --peer-status for each, in the same order. Required unless --dry-run."`
	PeerName   string        `placeholder:"NAME" help:"The name the peer gives this side (its store's peer.NAME.pub); by default the one peer key file that lists this side's key."`
	Kubeconfig string        `type:"path" placeholder:"FILE" help:"kubeconfig for secret: and pod: addresses; default $KUBECONFIG, then ~/.kube/config."`
	Timeout    time.Duration `default:"2m" help:"How long each step may wait for the gateways to confirm it."`
	Resume     bool          `help:"Only finish an interrupted rotation; never start a new one."`
	DryRun     bool          `help:"Print the state the stores are in and the steps that would follow; write nothing."`
	StopAfter  string        `hidden:"" placeholder:"STEP" help:"Stop after this step (prepare, stage, switch, revoke, unstage, tidy)."`
	cli.Logging
}

func (c *keysRotateCmd) Run(ctx context.Context, env cli.Env) error {
	rot, err := c.rotation(env)
	if err != nil {
		return cli.Usage(err)
	}
	if c.DryRun {
		plan, err := rot.Plan(ctx)
		if err != nil {
			return rotateError(err)
		}
		plan.Print(env.Stdout)
		fmt.Fprintln(env.Stdout, "(dry run: nothing was written)")
		return nil
	}
	_, err = rot.Run(ctx)
	return rotateError(err)
}

// rotation checks the flags and opens the stores and status sources.
func (c *keysRotateCmd) rotation(env cli.Env) (*rotate.Rotation, error) {
	if c.Timeout <= 0 {
		return nil, fmt.Errorf("--timeout %v: must be positive", c.Timeout)
	}
	if c.PeerName != "" && !keys.ValidName(c.PeerName) {
		return nil, fmt.Errorf("--peer-name %q: not a peer name (lowercase letters, digits and '-', up to 63)", c.PeerName)
	}
	var stop rotate.Step
	if c.StopAfter != "" {
		s, err := rotate.ParseStep(c.StopAfter)
		if err != nil {
			return nil, fmt.Errorf("--stop-after: %w", err)
		}
		stop = s
	}
	thisAddr, err := store.ParseAddress(c.Store)
	if err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	var peerAddrs []store.Address
	for _, ps := range c.PeerStore {
		peerAddr, err := store.ParseAddress(ps)
		if err != nil {
			return nil, fmt.Errorf("--peer-store: %w", err)
		}
		if thisAddr == peerAddr {
			return nil, fmt.Errorf("--store and --peer-store are both %s: each gateway has a store of its own", thisAddr)
		}
		if slices.Contains(peerAddrs, peerAddr) {
			return nil, fmt.Errorf("--peer-store %s is given twice", peerAddr)
		}
		peerAddrs = append(peerAddrs, peerAddr)
	}
	if !c.DryRun && (c.Status == "" || len(c.PeerStatus) == 0) {
		return nil, errors.New("--status and --peer-status are required: each step is confirmed through the gateways' /status (their admin URLs, or pod:[CONTEXT/]NAMESPACE/LABEL-SELECTOR[:PORT])")
	}
	if len(c.PeerStatus) > 0 && len(c.PeerStatus) != len(c.PeerStore) {
		return nil, fmt.Errorf("%d --peer-store and %d --peer-status: give one --peer-status for each --peer-store, in the same order", len(c.PeerStore), len(c.PeerStatus))
	}
	clients := &kube.Clients{Kubeconfig: c.Kubeconfig}
	rot := &rotate.Rotation{
		PeerName:  c.PeerName,
		Timeout:   c.Timeout,
		Resume:    c.Resume,
		StopAfter: stop,
		Out:       env.Stdout,
		Logger:    c.Logger(env.Stderr),
	}
	if rot.This.Store, err = openStore(clients, thisAddr); err != nil {
		return nil, fmt.Errorf("--store: %w", err)
	}
	if c.Status != "" {
		if rot.This.Status, err = openStatus(clients, c.Status); err != nil {
			return nil, fmt.Errorf("--status: %w", err)
		}
	}
	peers := make([]rotate.Side, len(peerAddrs))
	for i, a := range peerAddrs {
		if peers[i].Store, err = openStore(clients, a); err != nil {
			return nil, fmt.Errorf("--peer-store: %w", err)
		}
		if i < len(c.PeerStatus) {
			if peers[i].Status, err = openStatus(clients, c.PeerStatus[i]); err != nil {
				return nil, fmt.Errorf("--peer-status: %w", err)
			}
		}
	}
	rot.Peer, rot.Peers = peers[0], peers[1:]
	return rot, nil
}

func openStore(clients *kube.Clients, a store.Address) (store.Store, error) {
	if a.Kind == store.KindDir {
		return store.NewDir(a.Path), nil
	}
	cs, err := clients.For(a.Context)
	if err != nil {
		return nil, err
	}
	return kube.NewSecret(cs, a.Namespace, a.Name, a.String()), nil
}

func openStatus(clients *kube.Clients, s string) (rotate.StatusSource, error) {
	if strings.HasPrefix(s, "pod:") {
		a, err := kube.ParsePodAddress(s)
		if err != nil {
			return nil, err
		}
		cs, err := clients.For(a.Context)
		if err != nil {
			return nil, err
		}
		return kube.NewPodStatus(cs, a), nil
	}
	u, err := rotate.ParseStatusURL(s)
	if err != nil {
		return nil, err
	}
	return &rotate.HTTPStatus{URL: u}, nil
}

// rotateError makes the errors that mean "fix the stores or the flags"
// usage errors (exit 2: nothing was written).
func rotateError(err error) error {
	if errors.Is(err, rotate.ErrBadKey) || errors.Is(err, rotate.ErrNoWorkingKey) || errors.Is(err, rotate.ErrPeerName) {
		return cli.Usage(err)
	}
	return err
}
