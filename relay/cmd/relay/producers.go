package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/proto"
)

type producersCmd struct {
	Token producersTokenCmd `cmd:"" envprefix:"TOKEN_" help:"Make a bearer token for a producer: print it once, and the producers-file entry holding only its hash."`
	Check producersCheckCmd `cmd:"" envprefix:"CHECK_" help:"Check a producers file (or directory) as relay serve reads it, and list who may do what."`
}

type producersTokenCmd struct {
	Name    string   `arg:"" help:"The producer's name (A-Z, a-z, 0-9, '.', '_', '-')."`
	Queue   []string `short:"q" default:"default" placeholder:"QUEUE" help:"A queue the producer may use (repeat for more; * for every queue)."`
	Actions []string `short:"a" default:"enqueue,read" enum:"enqueue,read,cancel,retry" placeholder:"ACTION" help:"What it may do on them: enqueue, read, cancel, retry (comma-separated)."`
	Out     string   `short:"o" type:"path" placeholder:"FILE" help:"Write the token to this new file (mode 0600) instead of standard output; only the entry is printed."`
}

func (c *producersTokenCmd) Run(_ context.Context, env cli.Env) error {
	if err := proto.CheckName("producer", c.Name); err != nil {
		return cli.Usage(err)
	}
	queues := map[string][]producers.Action{}
	for _, q := range c.Queue {
		if q != producers.AnyQueue {
			if err := proto.CheckName("queue", q); err != nil {
				return cli.Usage(fmt.Errorf("--queue: %w", err))
			}
		}
		for _, a := range c.Actions {
			queues[q] = append(queues[q], producers.Action(a))
		}
	}
	token, hash, err := producers.NewToken()
	if err != nil {
		return err
	}
	entry := producers.Entry(c.Name, nil, []producers.TokenHash{hash}, queues)
	if _, err := producers.Parse([]byte("producers:\n" + entry)); err != nil {
		return cli.Usage(err) // an action listed twice, say
	}
	if c.Out != "" {
		f, err := os.OpenFile(c.Out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return cli.Usage(fmt.Errorf("--out: %w (it must be a new file)", err))
		}
		_, werr := fmt.Fprintln(f, token)
		if err := errors.Join(werr, f.Close()); err != nil {
			_ = os.Remove(c.Out)
			return fmt.Errorf("writing the token to %s: %w", c.Out, err)
		}
		fmt.Fprintf(env.Stdout, "# %s's token is in %s (mode 0600). Add this to relay's producers file\n# (it holds only the token's hash; relay rereads the file, no restart):\n%s", c.Name, c.Out, entry)
		return nil
	}
	fmt.Fprintf(env.Stdout, "# %s's token, shown this once: keep it in a file or Secret only the producer reads.\n%s\n# Add this to relay's producers file (it holds only the token's hash; relay\n# rereads the file, no restart). Remove the entry to revoke the token.\n%s", c.Name, token, entry)
	return nil
}

type producersCheckCmd struct {
	Path string `arg:"" type:"path" placeholder:"FILE|DIR" help:"The producers file, or a directory of *.yaml and *.yml files (as relay serve's --producers)."`
}

func (c *producersCheckCmd) Run(_ context.Context, env cli.Env) error {
	cfg, err := producers.Load(c.Path)
	if err != nil {
		return cli.Usage(err)
	}
	for _, p := range cfg.Producers {
		var grants []string
		for _, q := range sortedQueues(p) {
			var as []string
			for _, a := range p.Queues[q] {
				as = append(as, string(a))
			}
			grants = append(grants, q+": "+strings.Join(as, ","))
		}
		fmt.Fprintf(env.Stdout, "%s\t%d pins, %d tokens\t%s\n", p.Name, len(p.Pins), len(p.Tokens), strings.Join(grants, "; "))
	}
	fmt.Fprintf(env.Stdout, "%s: %d producers\n", c.Path, len(cfg.Producers))
	return nil
}

func sortedQueues(p *producers.Producer) []string {
	out := make([]string, 0, len(p.Queues))
	for q := range p.Queues {
		out = append(out, q)
	}
	sort.Strings(out)
	return out
}
