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
}

func (c *queuesCmd) Run(ctx context.Context, env cli.Env) error {
	cl, err := c.client()
	if err != nil {
		return err
	}
	qs, err := cl.Queues(ctx)
	if err != nil {
		return c.apiError(err)
	}
	if c.JSON {
		return printJSON(env.Stdout, api.QueuesResponse{Queues: qs})
	}
	printQueues(env, qs, time.Now())
	return nil
}

// printQueues writes one row per queue: its counts by state and the age
// of its oldest queued job.
func printQueues(env cli.Env, qs []api.QueueInfo, now time.Time) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "QUEUE\t")
	for _, s := range store.States() {
		fmt.Fprintf(tw, "%s\t", strings.ToUpper(string(s)))
	}
	fmt.Fprintln(tw, "OLDEST QUEUED")
	for _, q := range qs {
		fmt.Fprintf(tw, "%s\t", q.Name)
		for _, s := range store.States() {
			fmt.Fprintf(tw, "%d\t", q.Counts[string(s)])
		}
		age := "-"
		if q.OldestQueuedAt != nil {
			age = max(now.Sub(*q.OldestQueuedAt), 0).Truncate(time.Second).String()
		}
		fmt.Fprintln(tw, age)
	}
	_ = tw.Flush()
}
