package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// apiFlags name relay's producer API and this producer's credentials, for
// every command that calls the API (jobs, queues).
type apiFlags struct {
	Server  string        `default:"https://127.0.0.1:8080" placeholder:"URL" help:"relay's producer API (its --http), for every jobs and queues command."`
	Timeout time.Duration `default:"30s" help:"How long to wait for relay's answer to each call, for every jobs and queues command."`

	ServerPin  string `placeholder:"PIN" xor:"server" help:"relay's pin (sha256/…, tunnel keys pin on its identity.crt): the only key the API may present."`
	ServerCert string `type:"path" placeholder:"FILE" xor:"server" help:"relay's identity.crt, whose pin the API must present (instead of --server-pin)."`
	ClientCert string `type:"path" placeholder:"FILE" help:"This producer's client certificate (identity.crt from tunnel keys identity), with --client-key."`
	ClientKey  string `type:"path" placeholder:"FILE" help:"This producer's private key (identity.key, mode 0600 or 0400), with --client-cert."`
	TokenFile  string `type:"path" placeholder:"FILE" help:"A file holding this producer's bearer token (mode 0600 or 0400), for a producer without a certificate; $RELAY_TOKEN also works. Never on the command line."`
}

type jobsCmd struct {
	apiFlags `embed:""`

	Submit jobsSubmitCmd `cmd:"" envprefix:"SUBMIT_" help:"Enqueue a job and print it (JSON)."`
	Get    jobsGetCmd    `cmd:"" envprefix:"GET_" help:"Print a job (JSON), or only its result."`
	List   jobsListCmd   `cmd:"" envprefix:"LIST_" help:"List jobs by queue and state, oldest first."`
	Cancel jobsCancelCmd `cmd:"" help:"Cancel a job: a queued one at once, a running one at its next heartbeat."`
	Retry  jobsRetryCmd  `cmd:"" help:"Put a dead, failed or cancelled job back in its queue."`
	Delete jobsDeleteCmd `cmd:"" help:"Delete finished (succeeded, failed, dead or cancelled) jobs and free their idempotency keys."`
}

// tokenEnv holds a bearer token for relay jobs, read from the
// environment only (a flag's value would show in ps).
const tokenEnv = "RELAY_TOKEN"

// client builds the API client: relay pinned, and the producer's
// certificate or token.
func (j *apiFlags) client() (*api.Client, error) {
	var pin keys.Pin
	var err error
	switch {
	case j.ServerPin != "":
		if pin, err = keys.ParsePin(j.ServerPin); err != nil {
			return nil, cli.Usage(fmt.Errorf("--server-pin: %w", err))
		}
	case j.ServerCert != "":
		if pin, err = keys.LoadCertificatePin(j.ServerCert); err != nil {
			return nil, cli.Usage(fmt.Errorf("--server-cert: %w", err))
		}
	default:
		return nil, cli.Usage(errors.New("relay's key is not pinned: give --server-pin sha256/… or --server-cert FILE (relay's identity.crt; $RELAY_SERVER_PIN, $RELAY_SERVER_CERT)"))
	}
	token, err := j.token()
	if err != nil {
		return nil, err
	}
	var id *keys.Identity
	switch {
	case (j.ClientCert == "") != (j.ClientKey == ""):
		return nil, cli.Usage(errors.New("--client-cert and --client-key go together: the producer's identity.crt and identity.key"))
	case j.ClientCert != "" && token != "":
		return nil, cli.Usage(fmt.Errorf("both a client certificate (--client-cert) and a token (--token-file or $%s): give one", tokenEnv))
	case j.ClientCert != "":
		loaded, err := keys.LoadIdentity(j.ClientCert, j.ClientKey)
		if err != nil {
			return nil, cli.Usage(fmt.Errorf("--client-cert/--client-key: %w", err))
		}
		id = &loaded
	case token == "":
		return nil, cli.Usage(fmt.Errorf("no credentials: give --client-cert and --client-key, or a token with --token-file or $%s (relay producers token makes one)", tokenEnv))
	}
	return &api.Client{BaseURL: j.Server, HTTP: api.HTTPClient(api.ClientTLS(pin, id), j.Timeout), Token: token}, nil
}

// token reads the bearer token from --token-file or $RELAY_TOKEN; its
// errors never hold it.
func (j *apiFlags) token() (string, error) {
	from, token := "$"+tokenEnv, os.Getenv(tokenEnv)
	if j.TokenFile != "" {
		if token != "" {
			return "", cli.Usage(fmt.Errorf("both --token-file and $%s are set: give one", tokenEnv))
		}
		b, err := keys.ReadSecretFile(j.TokenFile)
		if err != nil {
			return "", cli.Usage(fmt.Errorf("--token-file: %w", err))
		}
		from, token = "--token-file "+j.TokenFile, string(b)
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return "", nil
	}
	if err := producers.CheckToken(token); err != nil {
		return "", cli.Usage(fmt.Errorf("%s: %w", from, err))
	}
	return token, nil
}

// apiError makes a refusal of the user's input exit 2, and says which
// server a call could not reach and how to name another.
func (j *apiFlags) apiError(err error) error {
	var ae *api.Error
	if errors.As(err, &ae) {
		if ae.Status == http.StatusBadRequest {
			return cli.Usage(err)
		}
		return err
	}
	var ue *url.Error
	if !errors.As(err, &ue) {
		return err
	}
	if ue.Timeout() {
		return fmt.Errorf("relay at %s did not answer within %s (--timeout, $RELAY_TIMEOUT): %w", j.Server, j.Timeout, ue.Err)
	}
	return fmt.Errorf("cannot reach relay at %s (set its API address with --server or $RELAY_SERVER): %w", j.Server, ue.Err)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type jobsSubmitCmd struct {
	Queue       string        `short:"q" help:"Queue to put the job in (required, but with --ndjson only for lines that name none)."`
	Payload     *string       `short:"p" xor:"payload" help:"The payload, as text (-p '' for an empty one)."`
	PayloadFile string        `short:"f" xor:"payload" placeholder:"FILE" help:"Read the payload from a file; - reads standard input."`
	NDJSON      bool          `name:"ndjson" help:"The -f file (implied by a name ending .ndjson) holds many jobs, one JSON job request a line (as POST /v1/jobs takes); all are enqueued or none."`
	Key         string        `name:"idempotency-key" short:"k" aliases:"key" placeholder:"KEY" help:"Idempotency key: submitting the same key again returns the first job."`
	MaxAttempts uint32        `placeholder:"N" help:"Attempts before the job is dead (default: relay's)."`
	Lease       time.Duration `help:"Lease duration (default: relay's)."`
	RunAfter    string        `placeholder:"WHEN" help:"Hold the job back until then: an RFC 3339 time or a delay such as 5m."`
	Wait        bool          `help:"Wait until the job ends: print its result and exit 0, or print its error and exit 1."`
	WaitTimeout time.Duration `default:"5m" help:"With --wait, give up (exit 1) if the job has not ended by then."`
}

func (c *jobsSubmitCmd) Run(ctx context.Context, parent *jobsCmd, env cli.Env) error {
	if c.NDJSON || strings.HasSuffix(c.PayloadFile, ".ndjson") {
		return c.runBatch(ctx, parent, env)
	}
	if c.Queue == "" {
		return cli.Usage(errors.New("no queue: give it with -q NAME"))
	}
	if c.Wait && c.WaitTimeout <= 0 {
		return cli.Usage(fmt.Errorf("--wait-timeout %s: want a positive duration", c.WaitTimeout))
	}
	req := api.JobRequest{Queue: c.Queue, MaxAttempts: c.MaxAttempts, IdempotencyKey: c.Key}
	switch {
	case c.PayloadFile == "-":
		b, err := io.ReadAll(io.LimitReader(os.Stdin, 1<<20+1))
		if err != nil {
			return fmt.Errorf("reading the payload from standard input: %w", err)
		}
		req.Payload = b
	case c.PayloadFile != "":
		b, err := os.ReadFile(c.PayloadFile)
		if err != nil {
			return cli.Usage(fmt.Errorf("--payload-file: %w", err))
		}
		req.Payload = b
	case c.Payload != nil:
		req.Payload = []byte(*c.Payload)
	default:
		return cli.Usage(errors.New("no payload: give it with -p TEXT, -f FILE or -f - (standard input); -p '' submits an empty one"))
	}
	if c.Lease != 0 {
		req.LeaseDuration = c.Lease.String()
	}
	if c.RunAfter != "" {
		t, err := parseWhen(c.RunAfter, time.Now())
		if err != nil {
			return cli.Usage(fmt.Errorf("--run-after: %w", err))
		}
		req.RunAfter = &t
	}
	cl, err := parent.client()
	if err != nil {
		return err
	}
	j, err := cl.Enqueue(ctx, req)
	if err != nil {
		return parent.apiError(err)
	}
	if c.Wait {
		return c.await(ctx, parent, cl, j, env)
	}
	return printJSON(env.Stdout, j)
}

// await polls job j until it ends or --wait-timeout passes: a succeeded
// job's result goes to standard output, any other end is an error.
func (c *jobsSubmitCmd) await(ctx context.Context, parent *jobsCmd, cl *api.Client, j api.Job, env cli.Env) error {
	deadline := time.Now().Add(c.WaitTimeout)
	j, err := awaitJob(ctx, cl, j, deadline)
	switch {
	case err != nil:
		return parent.apiError(err)
	case !store.State(j.State).Terminal():
		return fmt.Errorf("job %s is still %s after %s (--wait-timeout); relay jobs get %s shows it later", j.ID, j.State, c.WaitTimeout, j.ID)
	case j.State != string(store.Succeeded):
		return fmt.Errorf("job %s ended %s after %d attempt(s): %s", j.ID, j.State, j.Attempt, j.LastError)
	}
	_, err = env.Stdout.Write(j.Result)
	return err
}

// awaitJob polls j, backing off from 50ms to 1s, until it is terminal or
// deadline passes; it returns the last state seen.
func awaitJob(ctx context.Context, cl *api.Client, j api.Job, deadline time.Time) (api.Job, error) {
	delay := 50 * time.Millisecond
	for !store.State(j.State).Terminal() {
		left := time.Until(deadline)
		if left <= 0 {
			return j, nil
		}
		t := time.NewTimer(min(delay, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return j, ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, time.Second)
		next, err := cl.Get(ctx, j.ID)
		if err != nil {
			return j, fmt.Errorf("waiting for job %s: %w", j.ID, err)
		}
		j = next
	}
	return j, nil
}

// parseWhen reads an RFC 3339 time or a delay from now.
func parseWhen(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-01-02T15:04:05Z) nor a delay (90s, 5m)", s)
	}
	return now.Add(d), nil
}

type jobsGetCmd struct {
	ID     string `arg:"" help:"Job id."`
	Result bool   `help:"Print only the job's result bytes (nothing if it has none)."`
}

func (c *jobsGetCmd) Run(ctx context.Context, parent *jobsCmd, env cli.Env) error {
	cl, err := parent.client()
	if err != nil {
		return err
	}
	j, err := cl.Get(ctx, c.ID)
	if err != nil {
		return parent.apiError(err)
	}
	if c.Result {
		_, err := env.Stdout.Write(j.Result)
		return err
	}
	return printJSON(env.Stdout, j)
}

type jobsListCmd struct {
	Queue string `short:"q" help:"Only this queue."`
	State string `short:"s" enum:",queued,leased,retrying,succeeded,failed,dead,cancelled" default:"" help:"Only this state: queued, leased, retrying, succeeded, failed, dead or cancelled."`
	Limit int    `default:"50" help:"Jobs per page (1 to 1000)."`
	After string `placeholder:"ID" help:"Start after this job id (the next cursor a page printed)."`
	All   bool   `help:"Follow pages to the end (at most 100 pages)."`
	JSON  bool   `name:"json" help:"Print JSON instead of a table."`
}

func (c *jobsListCmd) Run(ctx context.Context, parent *jobsCmd, env cli.Env) error {
	if c.Limit < 1 || c.Limit > 1000 {
		return cli.Usage(fmt.Errorf("--limit %d: want 1 to 1000", c.Limit))
	}
	cl, err := parent.client()
	if err != nil {
		return err
	}
	o := api.ListOptions{Queue: c.Queue, State: c.State, Limit: c.Limit, After: c.After}
	var all api.ListResponse
	for page := 0; page < 100; page++ {
		resp, err := cl.List(ctx, o)
		if err != nil {
			return parent.apiError(err)
		}
		all.Jobs = append(all.Jobs, resp.Jobs...)
		all.Next = resp.Next
		if !c.All || resp.Next == "" {
			break
		}
		o.After = resp.Next
	}
	if c.JSON {
		return printJSON(env.Stdout, all)
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tQUEUE\tSTATE\tATTEMPT\tCREATED\tLAST ERROR")
	for _, j := range all.Jobs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", j.ID, j.Queue, j.State, j.Attempt, j.MaxAttempts,
			j.CreatedAt.Format(time.RFC3339), oneLine(j.LastError, 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if all.Next != "" {
		fmt.Fprintf(env.Stderr, "more: --after %s\n", all.Next)
	}
	return nil
}

func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = s[:n-1] + "…"
	}
	return s
}

type jobsCancelCmd struct {
	ID string `arg:"" help:"Job id."`
}

func (c *jobsCancelCmd) Run(ctx context.Context, parent *jobsCmd, env cli.Env) error {
	cl, err := parent.client()
	if err != nil {
		return err
	}
	j, err := cl.Cancel(ctx, c.ID)
	if err != nil {
		return parent.apiError(err)
	}
	return printJSON(env.Stdout, j)
}

type jobsRetryCmd struct {
	ID string `arg:"" help:"Job id."`
}

func (c *jobsRetryCmd) Run(ctx context.Context, parent *jobsCmd, env cli.Env) error {
	cl, err := parent.client()
	if err != nil {
		return err
	}
	j, err := cl.Retry(ctx, c.ID)
	if err != nil {
		return parent.apiError(err)
	}
	return printJSON(env.Stdout, j)
}

type jobsDeleteCmd struct {
	IDs []string `arg:"" name:"id" help:"Job ids."`
}

// Run deletes each job in turn, saying which went; one that cannot be
// deleted is reported and the rest still tried.
func (c *jobsDeleteCmd) Run(ctx context.Context, parent *jobsCmd, env cli.Env) error {
	cl, err := parent.client()
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range c.IDs {
		j, err := cl.Delete(ctx, id)
		if err != nil {
			errs = append(errs, fmt.Errorf("job %s: %w", id, parent.apiError(err)))
			continue
		}
		fmt.Fprintf(env.Stdout, "deleted %s (%s, queue %s)\n", j.ID, j.State, j.Queue)
	}
	return errors.Join(errs...)
}
