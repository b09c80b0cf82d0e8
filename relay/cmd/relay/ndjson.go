package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/tunnel-dev/tunnel/internal/cli"
	"github.com/tunnel-dev/tunnel/relay/api"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// maxNDJSONLine bounds one line of a jobs file: a 1 MiB payload in base64
// and room for the rest.
const maxNDJSONLine = 2 << 20

// runBatch enqueues every job of an NDJSON file in one batch, all or
// none, and prints the jobs one JSON a line in the file's order.
func (c *jobsSubmitCmd) runBatch(ctx context.Context, parent *jobsCmd, env cli.Env) error {
	switch {
	case c.PayloadFile == "":
		return cli.Usage(errors.New("--ndjson reads jobs from -f FILE (or -f - for standard input)"))
	case c.Payload != nil, c.Key != "", c.MaxAttempts != 0, c.Lease != 0, c.RunAfter != "", c.Wait:
		return cli.Usage(errors.New("with --ndjson each line gives its own job: -p, --idempotency-key, --max-attempts, --lease, --run-after and --wait do not apply (only -q, for lines that name no queue)"))
	}
	in := io.Reader(os.Stdin)
	name := "standard input"
	if c.PayloadFile != "-" {
		f, err := os.Open(c.PayloadFile)
		if err != nil {
			return cli.Usage(fmt.Errorf("--payload-file: %w", err))
		}
		defer f.Close()
		in, name = f, c.PayloadFile
	}
	reqs, lines, err := parseNDJSON(in, c.Queue)
	if err != nil {
		return cli.Usage(fmt.Errorf("%s: %w", name, err))
	}
	cl, err := parent.client()
	if err != nil {
		return err
	}
	jobs, err := cl.EnqueueBatch(ctx, reqs)
	if err != nil {
		var ae *api.Error
		var i int
		if errors.As(err, &ae) && ae.Field != "" {
			if _, serr := fmt.Sscanf(ae.Field, "jobs[%d]", &i); serr == nil && i >= 0 && i < len(lines) {
				err = fmt.Errorf("%s line %d: %w (nothing was enqueued)", name, lines[i], err)
			}
		}
		return parent.apiError(err)
	}
	enc := json.NewEncoder(env.Stdout)
	for _, j := range jobs {
		if err := enc.Encode(j); err != nil {
			return err
		}
	}
	return nil
}

// parseNDJSON reads one job request a line, strictly (no unknown fields),
// skipping blank lines; a line without a queue gets defaultQueue. lines
// holds each request's line number. Errors name the line.
func parseNDJSON(r io.Reader, defaultQueue string) (reqs []api.JobRequest, lines []int, err error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), maxNDJSONLine)
	n := 0
	for sc.Scan() {
		n++
		b := bytes.TrimSpace(sc.Bytes())
		if len(b) == 0 {
			continue
		}
		if len(reqs) == queue.MaxBatch {
			return nil, nil, fmt.Errorf("line %d: more than %d jobs; at most %d in one batch", n, queue.MaxBatch, queue.MaxBatch)
		}
		var req api.JobRequest
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&req); err != nil {
			return nil, nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, terr := dec.Token(); terr != io.EOF {
			return nil, nil, fmt.Errorf("line %d: data after the JSON job; give one job a line", n)
		}
		if req.Queue == "" {
			if defaultQueue == "" {
				return nil, nil, fmt.Errorf("line %d: no queue; name it in the line or give -q", n)
			}
			req.Queue = defaultQueue
		}
		reqs = append(reqs, req)
		lines = append(lines, n)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, nil, fmt.Errorf("line %d: longer than %d bytes", n+1, maxNDJSONLine)
		}
		return nil, nil, fmt.Errorf("reading line %d: %w", n+1, err)
	}
	if len(reqs) == 0 {
		return nil, nil, errors.New("no jobs (every line is blank)")
	}
	return reqs, lines, nil
}
