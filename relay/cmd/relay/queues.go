package main

import (
	"context"
	"fmt"
	"strconv"
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

	List   queuesListCmd   `cmd:"" default:"withargs" help:"Show each queue's jobs by state, its oldest queued job's age, whether it is paused, and jobs enqueued, completed and failed per second over the last minute (the default)."`
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
// its oldest queued job, whether it is paused and its rates.
func printQueues(env cli.Env, qs []api.QueueInfo, now time.Time) {
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprint(tw, "QUEUE\t")
	for _, s := range store.States() {
		fmt.Fprintf(tw, "%s\t", strings.ToUpper(string(s)))
	}
	fmt.Fprintln(tw, "OLDEST QUEUED\tPAUSED\tIN/S\tDONE/S\tFAILED/S")
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
		r := q.Rate
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", age, paused, perSecond(r.EnqueuedPerSecond), perSecond(r.CompletedPerSecond), perSecond(r.FailedPerSecond))
	}
	_ = tw.Flush()
}

// perSecond prints a rate with about three significant digits: 0, 0.017,
// 2.35, 41.7, 1250.
func perSecond(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case v >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case v >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'f', 3, 64)
}
