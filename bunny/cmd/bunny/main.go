// Command bunny is the worker: it leases jobs from relay over QUIC
// (through the local tunnel gateway), runs each through its queue's
// handler, and returns the results (see docs/bunny.md).
//
//	bunny run --config /etc/bunny/bunny.yaml
//	bunny config check /etc/bunny/bunny.yaml
//	bunny handler echo --listen 127.0.0.1:8081
//	bunny status --config /etc/bunny/bunny.yaml
package main

import (
	"io"
	"os"

	"github.com/alecthomas/kong"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
)

type commands struct {
	Run     runCmd     `cmd:"" help:"Run the worker: lease jobs from relay, run them, return the results; drain on SIGTERM."`
	Config  configCmd  `cmd:"" help:"Check a configuration file."`
	Handler handlerCmd `cmd:"" help:"Job handlers bunny carries itself."`
	Status  statusCmd  `cmd:"" envprefix:"STATUS_" help:"Show what a running bunny is doing: its connection to relay, slots and jobs (from its admin endpoint's /status)."`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

type configCmd struct {
	Check configCheckCmd `cmd:"" help:"Check a configuration file and print what bunny would do with it."`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// app names the binary for the command line.
func app() cli.App {
	return cli.App{
		Name:        "bunny",
		Description: "The worker that leases jobs from relay over QUIC and always returns their results (see docs/bunny.md).",
		EnvPrefix:   "BUNNY",
		Version:     buildinfo.Read().String(),
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	return app().Main(&commands{}, args, stdout, stderr)
}
