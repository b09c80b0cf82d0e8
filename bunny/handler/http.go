package handler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"
)

// BodyHead is how much of a non-2xx body an HTTP failure carries.
const BodyHead = 512

// HTTP POSTs each job's payload to URL. A 2xx response's body is the
// result; any other status fails the job with the status and the body's
// head. Redirects are not followed (a 3xx fails the job).
type HTTP struct {
	URL string
	// Timeout bounds one request, body included (required).
	Timeout time.Duration
	// MaxOutput caps the response body, in bytes (required).
	MaxOutput int
	// Client, if set, sends the requests; its CheckRedirect is ignored.
	Client *http.Client
}

// Run posts one job.
func (h *HTTP) Run(ctx context.Context, job Job) ([]byte, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, h.Timeout, ErrTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, h.URL, bytes.NewReader(job.Payload))
	if err != nil {
		return nil, fmt.Errorf("http: building the request: %w", err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Bunny-Job-Id", job.ID)
	req.Header.Set("Bunny-Queue", job.Queue)
	req.Header.Set("Bunny-Attempt", strconv.FormatUint(uint64(job.Attempt), 10))
	c := http.Client{}
	if h.Client != nil {
		c = *h.Client
	}
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return nil, h.ctxErr(ctx, fmt.Errorf("http: POST %s: %w", h.URL, unwrapURL(err)))
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, int64(h.MaxOutput)+1))
	if err != nil {
		return nil, h.ctxErr(ctx, fmt.Errorf("http: POST %s: reading the response: %w", h.URL, err))
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("http: POST %s: %s: %s", h.URL, resp.Status, head(body, BodyHead))
	}
	if len(body) > h.MaxOutput {
		return nil, fmt.Errorf("http: POST %s: response body %w", h.URL, overErr(h.MaxOutput))
	}
	return body, nil
}

func (h *HTTP) ctxErr(ctx context.Context, err error) error {
	if context.Cause(ctx) == ErrTimeout {
		return fmt.Errorf("http: POST %s: %w after %s", h.URL, ErrTimeout, h.Timeout)
	}
	return err
}

// unwrapURL drops *url.Error's repetition of the method and URL.
func unwrapURL(err error) error {
	if u := errors.Unwrap(err); u != nil {
		return u
	}
	return err
}
