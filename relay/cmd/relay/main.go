// Command relay is the task queue: `relay serve` runs it (workers over
// QUIC, producers over an internal HTTPS API), and `relay jobs …` talks to
// a running relay's API.
package main

import (
	"io"
	"os"

	"github.com/alecthomas/kong"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
)

type commands struct {
	Serve   serveCmd   `cmd:"" help:"Run relay: the job store, workers over QUIC, the producer API and metrics over HTTP."`
	Jobs    jobsCmd    `cmd:"" help:"Submit, inspect, cancel and retry jobs through a running relay's API."`
	Queues  queuesCmd  `cmd:"" help:"Show each queue's jobs by state, or pause and resume a queue, through a running relay's API."`
	Status  statusCmd  `cmd:"" envprefix:"STATUS_" help:"Show what a running relay is doing: its store, connected workers and queues (from its admin endpoint's /status)."`
	Migrate migrateCmd `cmd:"" help:"Create or upgrade relay's tables in the PostgreSQL database named by --store (relay serve also does it at start)."`
	Workers workersCmd `cmd:"" help:"Work with workers files."`

	Producers producersCmd `cmd:"" help:"Make producer tokens and check the producers file."`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// app names the binary for the command line.
func app() cli.App {
	return cli.App{
		Name:        "relay",
		Description: "A durable task queue whose workers lease jobs over QUIC (see docs/relay.md).",
		EnvPrefix:   "RELAY",
		Version:     buildinfo.Read().String(),
	}
}

func run(args []string, stdout, stderr io.Writer) int {
	return app().Main(&commands{}, args, stdout, stderr)
}
