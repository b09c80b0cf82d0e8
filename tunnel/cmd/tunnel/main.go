// Command tunnel runs and inspects the tunnel gateway: userspace WireGuard
// on a gVisor netstack that exposes exactly the ports its configuration
// names, to exactly the peers it names.
package main

import (
	"io"
	"os"

	"github.com/alecthomas/kong"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
)

type commands struct {
	Gateway gatewayCmd `cmd:"" help:"Run the gateway (the daemon a gateway pod runs)."`
	Config  struct {
		Check configCheckCmd `cmd:"" help:"Validate a gateway config file and print exactly what it exposes to whom."`
	} `cmd:"" help:"Work with gateway config files."`
	Status statusCmd `cmd:"" envprefix:"STATUS_" help:"Show a running gateway's peers (handshakes, traffic) and rules (flows, bytes, drops)."`
	Audit  auditCmd  `cmd:"" envprefix:"AUDIT_" help:"Probe a peer from inside the tunnel through a running gateway (every TCP port, UDP ports that matter); fail if anything answers beyond the forward rules."`
	Keys   keysCmd   `cmd:"" help:"Generate and inspect WireGuard keys and QUIC worker identities."`
	Demo   demoCmd   `cmd:"" envprefix:"DEMO_" help:"Run relay, both gateways and bunny as processes on loopback: jobs through the tunnel, checked, with a summary."`
	Bench  benchCmd  `cmd:"" envprefix:"BENCH_" help:"Measure the tunnel's throughput, latency, CPU and memory beside raw loopback and stock tun/netstack."`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// app names the binary for the command line.
func app() cli.App {
	return cli.App{
		Name:        "tunnel",
		Description: "A WireGuard point-to-point tunnel appliance: one port, one peer key, no privileges.",
		EnvPrefix:   "TUNNEL",
		Version:     buildinfo.Read().String(),
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	return app().Main(&commands{}, args, stdout, stderr)
}
