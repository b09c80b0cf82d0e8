package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/store"
)

type queuesCmd struct {
	apiFlags `embed:""`

	JSON bool `name:"json" env:"RELAY_QUEUES_JSON" help:"Print JSON instead of a table."`

	List   queuesListCmd   `cmd:"" default:"withargs" help:"Show each queue's jobs by state, its oldest queued job's age and whether it is paused (the default)."`
	Pause  queuesPauseCmd  `cmd:"" help:"Stop workers leasing a queue's jobs; enqueues go on, and the pause survives a restart. Needs the cancel action on the queue."`
	Resume queuesResumeCmd `cmd:"" help:"Let workers lease a paused queue's jobs again. Needs the cancel action on the queue."`
}

type queuesListCmd struct{}

func (c *queuesListCmd) Run(ctx context.Context, parent *queuesCmd, env cli.Env) error {
	cl, err := parent.client()
	if err != nil {
		return err
	}
	qs, err := cl.Queues(ctx)
	if err != nil {
		return parent.apiError(err)
	}
	if parent.JSON {
		return printJSON(env.Stdout, api.QueuesResponse{Queues: qs})
	}
	printQueues(env, qs, time.Now())
	return nil
}

type queuesPauseCmd struct {
	Name string `arg:"" help:"The queue."`
}

func (c *queuesPauseCmd) Run(ctx context.Context, parent *queuesCmd, env cli.Env) error {
	return parent.setPaused(ctx, env, c.Name, true)
}

type queuesResumeCmd struct {
	Name string `arg:"" help:"The queue."`
}

func (c *queuesResumeCmd) Run(ctx context.Context, parent *queuesCmd, env cli.Env) error {
	return parent.setPaused(ctx, env, c.Name, false)
}

// setPaused pauses or resumes a queue and says what it did.
func (c *queuesCmd) setPaused(ctx context.Context, env cli.Env, name string, paused bool) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	call := cl.ResumeQueue
	if paused {
		call = cl.PauseQueue
	}
	res, err := call(ctx, name)
	if err != nil {
		return c.apiError(err)
	}
	if c.JSON {
		return printJSON(env.Stdout, res)
	}
	if res.Paused {
		fmt.Fprintf(env.Stdout, "queue %s paused: its jobs are not leased until relay queues resume %s\n", res.Name, res.Name)
	} else {
		fmt.Fprintf(env.Stdout, "queue %s resumed: its jobs are leased again\n", res.Name)
	}
	return nil
}

// printQueues writes one row per queue: its counts by state, the age of
// its oldest queued job and whether it is paused.
func printQueues(env cli.Env, qs []api.QueueInfo, now time.Time) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "QUEUE\t")
	for _, s := range store.States() {
		fmt.Fprintf(tw, "%s\t", strings.ToUpper(string(s)))
	}
	fmt.Fprintln(tw, "OLDEST QUEUED\tPAUSED")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t", q.Name)
		for _, s := range store.States() {
			fmt.Fprintf(tw, "%d\t", q.Counts[string(s)])
		}
		age := "-"
		if q.OldestQueuedAt != nil {
			age = max(now.Sub(*q.OldestQueuedAt), 0).Truncate(time.Second).String()
		}
		paused := "no"
		if q.Paused {
			paused = "yes"
		}
		fmt.Fprintf(tw, "%s\t%s\n", age, paused)
	}
	_ = tw.Flush()
}
