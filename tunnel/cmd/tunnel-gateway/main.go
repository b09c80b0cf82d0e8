// Command tunnel-gateway is the gateway daemon alone: what a gateway pod
// runs. It does what `tunnel gateway` does, flag for flag, in a binary
// that links neither the key tools, the Kubernetes client, the demo nor
// the benchmark harness, so the pod maps and pages in less of it: its
// resident set is the gateway's, not the whole command line's.
//
//	tunnel-gateway --config /etc/tunnel/config/gateway.yaml
//
// It also runs one benchmark gateway (hidden, spec on standard input) so
// that `tunnel bench` measures this binary's memory.
package main

import (
	"context"
	"io"
	"os"

	"github.com/alecthomas/kong"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/internal/gatewaycmd"
	"github.com/tunnel-dev/tunnel/tunnel/bench/node"
)

type commands struct {
	Run       gatewaycmd.Command `cmd:"" default:"withargs" help:"Run the gateway (the default)."`
	BenchNode benchNodeCmd       `cmd:"" name:"bench-node" hidden:"" help:"Run one benchmark gateway (spec on standard input)."`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

type benchNodeCmd struct{}

func (c *benchNodeCmd) Run(ctx context.Context, env cli.Env) error {
	return node.Main(ctx, os.Stdin, env.Stdout)
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return cli.App{
		Name:        "tunnel-gateway",
		Description: "The tunnel gateway daemon: userspace WireGuard on a gVisor netstack, exposing exactly what its config names.",
		EnvPrefix:   "TUNNEL",
		Version:     buildinfo.Read().String(),
	}.Main(&commands{}, args, stdout, stderr)
}
