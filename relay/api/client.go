package api

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client calls relay's producer API.
type Client struct {
	// BaseURL is relay's API address, such as
	// "https://relay.relay.svc:8080".
	BaseURL string
	// HTTP is the client to use: HTTPClient over ClientTLS, which pins
	// relay and may carry the producer's certificate.
	HTTP *http.Client
	// Token is the producer's bearer token, for a producer without a
	// client certificate; empty sends none. It goes only into the
	// Authorization header, never into an error.
	Token string
}

// Error is an API error response.
type Error struct {
	Status int
	ErrorDetail
}

func (e *Error) Error() string {
	if e.Field != "" && !strings.Contains(e.Message, e.Field) {
		return fmt.Sprintf("relay API: %s (%d %s, field %s)", e.Message, e.Status, e.Code, e.Field)
	}
	return fmt.Sprintf("relay API: %s (%d %s)", e.Message, e.Status, e.Code)
}

// Enqueue adds one job; existing is set when its idempotency key matched
// an earlier job, which is returned instead.
func (c *Client) Enqueue(ctx context.Context, r JobRequest) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, "/v1/jobs", r, &j)
	return j, err
}

// EnqueueBatch adds up to 1000 jobs, all or none.
func (c *Client) EnqueueBatch(ctx context.Context, rs []JobRequest) ([]Job, error) {
	var out BatchResponse
	err := c.do(ctx, http.MethodPost, "/v1/jobs/batch", BatchRequest{Jobs: rs}, &out)
	return out.Jobs, err
}

// Get returns one job.
func (c *Client) Get(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodGet, "/v1/jobs/"+url.PathEscape(id), nil, &j)
	return j, err
}

// ListOptions select a page of jobs.
type ListOptions struct {
	Queue, State, After string
	Limit               int
}

// List returns one page of jobs.
func (c *Client) List(ctx context.Context, o ListOptions) (ListResponse, error) {
	v := url.Values{}
	if o.Queue != "" {
		v.Set("queue", o.Queue)
	}
	if o.State != "" {
		v.Set("state", o.State)
	}
	if o.After != "" {
		v.Set("after", o.After)
	}
	if o.Limit > 0 {
		v.Set("limit", strconv.Itoa(o.Limit))
	}
	path := "/v1/jobs"
	if len(v) > 0 {
		path += "?" + v.Encode()
	}
	var out ListResponse
	err := c.do(ctx, http.MethodGet, path, nil, &out)
	return out, err
}

// Cancel cancels a job (a running one at its next heartbeat).
func (c *Client) Cancel(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/cancel", nil, &j)
	return j, err
}

// Retry puts a dead, failed or cancelled job back in its queue.
func (c *Client) Retry(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodPost, "/v1/jobs/"+url.PathEscape(id)+"/retry", nil, &j)
	return j, err
}

// Delete removes a finished job and returns it as it was; a live one is
// refused, 409.
func (c *Client) Delete(ctx context.Context, id string) (Job, error) {
	var j Job
	err := c.do(ctx, http.MethodDelete, "/v1/jobs/"+url.PathEscape(id), nil, &j)
	return j, err
}

// Queues lists the queues that hold jobs and that the producer may read,
// with their counts by state.
func (c *Client) Queues(ctx context.Context) ([]QueueInfo, error) {
	var out QueuesResponse
	err := c.do(ctx, http.MethodGet, "/v1/queues", nil, &out)
	return out.Queues, err
}

// PauseQueue stops leases of a queue; its enqueues go on.
func (c *Client) PauseQueue(ctx context.Context, name string) (PauseResponse, error) {
	var out PauseResponse
	err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(name)+"/pause", nil, &out)
	return out, err
}

// ResumeQueue lets a paused queue's jobs be leased again.
func (c *Client) ResumeQueue(ctx context.Context, name string) (PauseResponse, error) {
	var out PauseResponse
	err := c.do(ctx, http.MethodPost, "/v1/queues/"+url.PathEscape(name)+"/resume", nil, &out)
	return out, err
}

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 30 * time.Second}
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return fmt.Errorf("relay API: encoding the request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.BaseURL, "/")+path, body)
	if err != nil {
		return fmt.Errorf("relay API: %w", err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("relay API: %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("relay API: reading the answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 300 {
		var eb ErrorBody
		if json.Unmarshal(b, &eb) != nil || eb.Error.Code == "" {
			return &Error{Status: resp.StatusCode, ErrorDetail: ErrorDetail{Code: "http", Message: strings.TrimSpace(string(b))}}
		}
		return &Error{Status: resp.StatusCode, ErrorDetail: eb.Error}
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("relay API: decoding the answer to %s %s: %w", method, path, err)
	}
	return nil
}
