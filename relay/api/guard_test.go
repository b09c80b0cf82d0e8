package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// failures reads relay_producer_auth_failures_total{reason}.
func (e *env) failures(t *testing.T, reason string) float64 {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "relay_producer_auth_failures_total" {
			continue
		}
		for _, m := range mf.Metric {
			if m.Label[0].GetValue() == reason {
				return m.Counter.GetValue()
			}
		}
	}
	t.Fatalf("no relay_producer_auth_failures_total{reason=%q}", reason)
	return 0
}

func status(err error) int {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Status
	}
	return 0
}

// Over real TLS on loopback: a producer with no credentials, an unknown
// certificate or token, and producers (a token, a client certificate)
// allowed only on queue a can enqueue to, read, list, cancel or retry
// nothing of queue b, and learn nothing of b's jobs: a b job's id is
// answered as an unknown one.
func TestProducersKeptToTheirQueues(t *testing.T) {
	aTok, aHash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	aID := testutil.Identity(t, "producer-a")
	onlyA := map[string][]producers.Action{"a": producers.Actions()}
	e := newEnv(t, queue.Options{}, producers.Entry("a-token", nil, []producers.TokenHash{aHash}, onlyA),
		producers.Entry("a-cert", []keys.Pin{aID.Pin()}, nil, onlyA))
	ctx := context.Background()
	bJob, err := e.c.Enqueue(ctx, JobRequest{Queue: "b", PayloadText: "secret of b"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Cancel(ctx, bJob.ID); err != nil {
		t.Fatal(err) // a cancelled job, so that retry would apply
	}
	bOther, err := e.c.Enqueue(ctx, JobRequest{Queue: "b"})
	if err != nil {
		t.Fatal(err)
	}
	stranger := testutil.Identity(t, "stranger")
	strangeTok, _, _ := producers.NewToken()
	unauth := map[string]*Client{
		"no credentials":    e.client(nil, ""),
		"unknown cert":      e.client(&stranger, ""),
		"unknown token":     e.client(nil, strangeTok),
		"malformed token":   e.client(nil, "letmein"),
		"the hash as token": e.client(nil, aHash.String()),
	}
	for name, c := range unauth {
		t.Run(name, func(t *testing.T) {
			calls := map[string]error{}
			_, calls["enqueue"] = c.Enqueue(ctx, JobRequest{Queue: "b"})
			_, calls["batch"] = c.EnqueueBatch(ctx, []JobRequest{{Queue: "b"}})
			_, calls["get"] = c.Get(ctx, bJob.ID)
			_, calls["list"] = c.List(ctx, ListOptions{Queue: "b"})
			_, calls["list all"] = c.List(ctx, ListOptions{})
			_, calls["cancel"] = c.Cancel(ctx, bOther.ID)
			_, calls["retry"] = c.Retry(ctx, bJob.ID)
			for call, err := range calls {
				var ae *Error
				if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized || ae.Code != "unauthenticated" {
					t.Errorf("%s: %v; want 401 unauthenticated", call, err)
				}
			}
		})
	}
	for name, c := range map[string]*Client{"token": e.client(nil, aTok), "cert": e.client(&aID, "")} {
		t.Run("allowed only a, by "+name, func(t *testing.T) {
			if _, err := c.Enqueue(ctx, JobRequest{Queue: "b"}); status(err) != http.StatusForbidden {
				t.Errorf("enqueue to b: %v", err)
			}
			if _, err := c.EnqueueBatch(ctx, []JobRequest{{Queue: "a"}, {Queue: "b"}}); status(err) != http.StatusForbidden || !strings.Contains(err.Error(), "jobs[1].queue") {
				t.Errorf("a batch with one job for b: %v", err)
			}
			if _, err := c.List(ctx, ListOptions{Queue: "b"}); status(err) != http.StatusForbidden {
				t.Errorf("list b: %v", err)
			}
			_, unknownErr := c.Get(ctx, "no-such-job")
			for call, f := range map[string]func() error{
				"get":    func() error { _, err := c.Get(ctx, bJob.ID); return err },
				"cancel": func() error { _, err := c.Cancel(ctx, bOther.ID); return err },
				"retry":  func() error { _, err := c.Retry(ctx, bJob.ID); return err },
			} {
				err := f()
				if status(err) != http.StatusNotFound || strings.Contains(err.Error(), `"b"`) || strings.Contains(err.Error(), "queue") {
					t.Errorf("%s of b's job: %v; want the 404 an unknown id gets (%v)", call, err, unknownErr)
				}
			}
			a, err := c.Enqueue(ctx, JobRequest{Queue: "a", PayloadText: "mine"})
			if err != nil {
				t.Fatal(err)
			}
			if got, err := c.Get(ctx, a.ID); err != nil || string(got.Payload) != "mine" {
				t.Fatalf("get a's own job: %+v %v", got, err)
			}
			page, err := c.List(ctx, ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, j := range page.Jobs {
				if j.Queue != "a" {
					t.Errorf("a listing without a queue shows job %s of queue %s", j.ID, j.Queue)
				}
			}
			if _, err := c.Cancel(ctx, a.ID); err != nil {
				t.Fatalf("cancel a's own job: %v", err)
			}
		})
	}
	// Nothing of b changed.
	for _, id := range []string{bJob.ID, bOther.ID} {
		j, err := e.c.Get(ctx, id)
		if err != nil || (id == bOther.ID && j.State != "queued") || (id == bJob.ID && j.State != "cancelled") {
			t.Fatalf("b's job %s: %+v %v", id, j, err)
		}
	}
	if p, err := e.c.List(ctx, ListOptions{Queue: "b"}); err != nil || len(p.Jobs) != 2 {
		t.Fatalf("b holds %v %v; want its two jobs", p.Jobs, err)
	}
	for reason, min := range map[string]float64{"no_credentials": 7, "unknown_identity": 7, "unknown_token": 7, "bad_token": 14, "forbidden": 2 * 6} {
		if got := e.failures(t, reason); got < min {
			t.Errorf("relay_producer_auth_failures_total{reason=%q} = %v, want at least %v", reason, got, min)
		}
	}
	logs := e.logs.String()
	for _, secret := range []string{aTok, strangeTok, "letmein"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("a token is in the log:\n%s", logs)
		}
	}
	// Rate-limited: one line per reason per interval, however many.
	if n := strings.Count(logs, "reason=unknown_token"); n != 1 {
		t.Errorf("%d log lines for unknown tokens; want 1 in %s", n, refusalLogEvery)
	}
	if !strings.Contains(logs, "reason=unknown_identity") || !strings.Contains(logs, stranger.Pin().String()) {
		t.Errorf("the refused certificate's pin is not logged:\n%s", logs)
	}
}

// An action not granted on a queue the producer may read is refused,
// 403; a producer that may cancel but not read sees no payload.
func TestActionsPerQueue(t *testing.T) {
	rTok, rHash, _ := producers.NewToken()
	cTok, cHash, _ := producers.NewToken()
	e := newEnv(t, queue.Options{},
		producers.Entry("reader", nil, []producers.TokenHash{rHash}, map[string][]producers.Action{"a": {producers.Read}}),
		producers.Entry("canceller", nil, []producers.TokenHash{cHash}, map[string][]producers.Action{"a": {producers.Cancel}}))
	ctx := context.Background()
	j, err := e.c.Enqueue(ctx, JobRequest{Queue: "a", PayloadText: "private"})
	if err != nil {
		t.Fatal(err)
	}
	reader, canceller := e.client(nil, rTok), e.client(nil, cTok)
	if _, err := reader.Enqueue(ctx, JobRequest{Queue: "a"}); status(err) != http.StatusForbidden {
		t.Errorf("reader enqueues: %v", err)
	}
	if _, err := reader.Cancel(ctx, j.ID); status(err) != http.StatusForbidden || !strings.Contains(err.Error(), "may not cancel") {
		t.Errorf("reader cancels: %v", err)
	}
	if _, err := canceller.Get(ctx, j.ID); status(err) != http.StatusNotFound {
		t.Errorf("canceller reads: %v", err)
	}
	got, err := canceller.Cancel(ctx, j.ID)
	if err != nil || got.State != "cancelled" || len(got.Payload) != 0 {
		t.Fatalf("canceller cancels: %+v %v", got, err)
	}
	if _, err := canceller.Retry(ctx, j.ID); status(err) != http.StatusNotFound {
		t.Errorf("canceller retries: %v", err)
	}
}

// Removing a token from the file refuses it from the next request on,
// with no restart; a bad edit keeps the running file.
func TestRevokedTokenRefused(t *testing.T) {
	tok, hash, _ := producers.NewToken()
	entry := producers.Entry("ci", nil, []producers.TokenHash{hash}, map[string][]producers.Action{"a": {producers.Enqueue}})
	e := newEnv(t, queue.Options{}, entry)
	ctx := context.Background()
	c := e.client(nil, tok)
	if _, err := c.Enqueue(ctx, JobRequest{Queue: "a"}); err != nil {
		t.Fatal(err)
	}
	e.writeProducers(t, "  - {name: broken")
	e.w.Check()
	time.Sleep(100 * time.Millisecond)
	if _, err := c.Enqueue(ctx, JobRequest{Queue: "a"}); err != nil {
		t.Fatalf("a bad edit dropped the running file: %v", err)
	}
	e.writeProducers(t) // everyone revoked
	testutil.Eventually(t, 5*time.Second, "the token refused", func() bool {
		e.w.Check()
		_, err := c.Enqueue(ctx, JobRequest{Queue: "a"})
		return status(err) == http.StatusUnauthorized
	})
	if _, err := c.List(ctx, ListOptions{Queue: "a"}); status(err) != http.StatusUnauthorized {
		t.Fatalf("the revoked token lists: %v", err)
	}
}

// What a browser sends for a web page, a cross-site fetch or a form, is
// refused even with a valid token; a body that is not JSON is 415.
func TestBrowserRequestsRefused(t *testing.T) {
	e := newEnv(t, queue.Options{})
	body := `{"queue":"a"}`
	for _, tt := range []struct {
		name    string
		headers map[string]string
		status  int
	}{
		{"cross-origin fetch", map[string]string{"Origin": "https://evil.example", "Content-Type": "application/json"}, 403},
		{"null origin", map[string]string{"Origin": "null", "Content-Type": "application/json"}, 403},
		{"cross-site form", map[string]string{"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"}, 403},
		{"same-site", map[string]string{"Sec-Fetch-Site": "same-site", "Content-Type": "application/json"}, 403},
		{"no content type", map[string]string{}, 415},
		{"form content type", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"a program's request", map[string]string{"Content-Type": "application/json; charset=utf-8", "Sec-Fetch-Site": "none"}, 201},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, e.srv.URL()+"/v1/jobs", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e.token)
			for k, v := range tt.headers {
				req.Header.Set(k, v)
			}
			resp, err := e.c.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tt.status)
			}
		})
	}
	if n := len(e.q.Counts()); n != 1 {
		t.Fatalf("refused requests enqueued: %v", e.q.Counts())
	}
	if e.failures(t, "cross_origin") != 4 || e.failures(t, "content_type") != 2 {
		t.Fatalf("cross_origin %v, content_type %v", e.failures(t, "cross_origin"), e.failures(t, "content_type"))
	}
}

// A producer that does not pin relay's key refuses to talk to it, so a
// token is never sent to an impostor.
func TestClientPinsRelay(t *testing.T) {
	e := newEnv(t, queue.Options{})
	impostor := testutil.Identity(t, "impostor")
	c := &Client{BaseURL: e.srv.URL(), HTTP: HTTPClient(ClientTLS(impostor.Pin(), nil), 5*time.Second), Token: e.token}
	_, err := c.List(context.Background(), ListOptions{})
	if err == nil || !strings.Contains(err.Error(), "not the pinned") || strings.Contains(err.Error(), e.token) {
		t.Fatalf("a relay with another key: %v", err)
	}
}

// FuzzAuthorization: no Authorization header but "Bearer" and a listed
// token authenticates, and no refusal repeats the header.
func FuzzAuthorization(f *testing.F) {
	e := newEnv(f, queue.Options{})
	f.Add("Bearer " + e.token)
	f.Add("bearer " + e.token)
	f.Add("Bearer  " + e.token)
	f.Add("Basic dXNlcjpwYXNz")
	f.Add("Bearer relaytok_")
	f.Add("")
	f.Fuzz(func(t *testing.T, h string) {
		req := httptest.NewRequest(http.MethodGet, "/v1/jobs?limit=1", nil)
		req.Header["Authorization"] = []string{h}
		rec := httptest.NewRecorder()
		e.h.ServeHTTP(rec, req)
		scheme, tok, _ := strings.Cut(h, " ")
		ok := strings.EqualFold(scheme, "bearer") && tok == e.token
		if (rec.Code == http.StatusOK) != ok {
			t.Fatalf("Authorization %q: status %d", h, rec.Code)
		}
		if !ok && len(h) > 8 && strings.Contains(rec.Body.String(), h) {
			t.Fatalf("the refusal repeats the header: %s", rec.Body.String())
		}
	})
}
