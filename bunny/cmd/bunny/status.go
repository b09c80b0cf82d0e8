package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/config"
	"github.com/tunnel-dev/tunnel/bunny/worker"
	"github.com/tunnel-dev/tunnel/internal/admin"
	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/keys"
)

// bunnyStatus is GET /status on bunny's admin endpoint.
type bunnyStatus struct {
	Version   string    `json:"version"`
	Revision  string    `json:"revision,omitempty"`
	StartedAt time.Time `json:"started_at"`
	// Worker is bunny's identity name, as relay's workers file knows it.
	Worker   string `json:"worker"`
	Pin      string `json:"pin"`
	RelayPin string `json:"relay_pin"`
	worker.Status
}

// statusHandler serves /status.
func statusHandler(build buildinfo.Info, id keys.Identity, relayPin keys.Pin, w *worker.Worker) http.Handler {
	started := time.Now().UTC()
	return admin.JSON(func() any {
		return bunnyStatus{Version: build.Version, Revision: build.Revision, StartedAt: started,
			Worker: id.Name(), Pin: id.Pin().String(), RelayPin: relayPin.String(), Status: w.Status()}
	})
}

type statusCmd struct {
	Config string `short:"c" type:"path" placeholder:"FILE" xor:"target" help:"bunny's configuration file: its admin.listen is the endpoint to read."`
	Admin  string `placeholder:"URL" xor:"target" help:"bunny's admin endpoint (default: http://127.0.0.1:9090, bunny's default admin.listen)."`
	JSON   bool   `help:"Print the status as JSON."`
}

// base is the admin endpoint to read, and the flag that named it.
func (c *statusCmd) base() (url, from string, err error) {
	switch {
	case c.Config != "":
		cfg, err := config.LoadOffline(c.Config)
		if err != nil {
			return "", "", cli.Usage(fmt.Errorf("--config: %w", err))
		}
		if cfg.Admin.Listen == "" {
			return "", "", cli.Usage(fmt.Errorf("--config %s: admin.listen is empty, so that bunny serves no /status", c.Config))
		}
		return admin.URL(cfg.Admin.Listen), "admin.listen in " + c.Config, nil
	case c.Admin != "":
		return admin.URL(c.Admin), "--admin", nil
	}
	return admin.URL(config.DefaultAdminListen), "the default admin.listen", nil
}

func (c *statusCmd) Run(ctx context.Context, env cli.Env) error {
	base, from, err := c.base()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var st bunnyStatus
	if err := admin.Get(ctx, base, "/status", &st); err != nil {
		if errors.Is(err, admin.ErrNothingListening) {
			return fmt.Errorf("%w (%s): is bunny running? Point at it with --config FILE or --admin URL", err, from)
		}
		return fmt.Errorf("reading bunny's status: %w", err)
	}
	if st.Worker == "" || st.Relay == "" {
		return fmt.Errorf("%s/status (%s) is not bunny's (it names no worker or relay)", base, from)
	}
	if c.JSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	printStatus(env.Stdout, st, time.Now())
	return nil
}

// printStatus writes bunny's status: who it is, its connection to relay
// (and the last problem with it), its slots and its queues.
func printStatus(w io.Writer, st bunnyStatus, now time.Time) {
	ago := func(t time.Time) string { return max(now.Sub(t), 0).Truncate(time.Second).String() + " ago" }
	version := st.Version
	if st.Revision != "" {
		version += " (" + st.Revision + ")"
	}
	fmt.Fprintf(w, "bunny %s  up %s  worker %s %s\n", version, max(now.Sub(st.StartedAt), 0).Truncate(time.Second), st.Worker, st.Pin)
	switch {
	case st.Connected:
		fmt.Fprintf(w, "relay %s: connected since %s (reconnects %d)\n", st.Relay, ago(st.Since), st.Reconnects)
	case st.Since.IsZero():
		fmt.Fprintf(w, "relay %s: NOT CONNECTED, never since start\n", st.Relay)
	default:
		fmt.Fprintf(w, "relay %s: NOT CONNECTED since %s\n", st.Relay, ago(st.Since))
	}
	if p := st.Problem; p != nil {
		fmt.Fprintf(w, "  last problem %s: %s\n", ago(p.At), p.Message)
		if p.Hint != "" {
			fmt.Fprintf(w, "  hint: %s\n", p.Hint)
		}
		if p.Error != "" {
			fmt.Fprintf(w, "  error: %s\n", p.Error)
		}
	}
	fmt.Fprintf(w, "slots: %d busy, %d free of %d\n\n", st.Busy, max(st.Slots-st.Busy, 0), st.Slots)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "QUEUE\tRUNNING\tSUCCEEDED\tFAILED")
	for _, q := range st.Queues {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\n", q.Name, q.Running, q.Succeeded, q.Failed)
	}
	_ = tw.Flush()
}
