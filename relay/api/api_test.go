package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/internal/testutil"
	"github.com/tunnel-dev/tunnel/keys"
	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

type env struct {
	q     *queue.Queue
	h     http.Handler
	srv   *Server
	c     *Client // the admin producer: every action on every queue
	relay keys.Identity
	// token is the admin producer's; file the producers file.
	token string
	file  string
	w     *producers.Watcher
	reg   *prometheus.Registry
	logs  *testutil.Buffer
}

// newEnv runs the API over real TLS on loopback, with a producers file
// whose producer "admin" (a token) may do everything, plus extra entries.
func newEnv(t testing.TB, qo queue.Options, extra ...string) *env {
	t.Helper()
	tok, hash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{relay: testutil.Identity(t, "relay"), token: tok, file: filepath.Join(t.TempDir(), "producers.yaml"), reg: prometheus.NewRegistry(), logs: &testutil.Buffer{}}
	e.writeProducers(t, append([]string{producers.Entry("admin", nil, []producers.TokenHash{hash}, map[string][]producers.Action{producers.AnyQueue: producers.Actions()})}, extra...)...)
	ctx, cancel := context.WithCancel(context.Background())
	e.w, err = producers.Watch(ctx, producers.WatchOptions{Path: e.file, Every: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); <-e.w.Done() })
	st, err := store.OpenBolt(store.BoltOptions{Path: filepath.Join(t.TempDir(), "relay.db")})
	if err != nil {
		t.Fatal(err)
	}
	qo.Store = st
	q, err := queue.Open(context.Background(), qo)
	if err != nil {
		t.Fatal(err)
	}
	e.q = q
	e.h, err = NewHandler(Options{Queue: q, MaxPayload: qo.MaxPayload, Producers: e.w.Config, Registerer: e.reg, Logger: e.logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	e.srv, err = Start(ctx, ServerOptions{Addr: "127.0.0.1:0", Identity: e.relay, Handler: e.h})
	if err != nil {
		t.Fatal(err)
	}
	e.c = e.client(nil, tok)
	t.Cleanup(func() {
		_ = e.srv.Close()
		_ = q.Close()
		_ = st.Close()
	})
	return e
}

// writeProducers replaces the producers file with these entries.
func (e *env) writeProducers(t testing.TB, entries ...string) {
	t.Helper()
	if err := os.WriteFile(e.file, []byte("producers:\n"+strings.Join(entries, "")), 0o644); err != nil {
		t.Fatal(err)
	}
}

// client calls the API as the producer with identity id, or with token.
func (e *env) client(id *keys.Identity, token string) *Client {
	return &Client{BaseURL: e.srv.URL(), HTTP: HTTPClient(ClientTLS(e.relay.Pin(), id), 10*time.Second), Token: token}
}

func TestEnqueueGetListCancelRetry(t *testing.T) {
	e := newEnv(t, queue.Options{})
	ctx := context.Background()
	at := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	j, err := e.c.Enqueue(ctx, JobRequest{Queue: "default", PayloadText: "hello", MaxAttempts: 3, LeaseDuration: "10s", IdempotencyKey: "k", RunAfter: &at})
	if err != nil {
		t.Fatal(err)
	}
	if j.ID == "" || j.State != "queued" || string(j.Payload) != "hello" || j.MaxAttempts != 3 || j.LeaseDuration != "10s" || !j.RunAfter.Equal(at) || j.Existing {
		t.Fatalf("enqueued: %+v", j)
	}
	again, err := e.c.Enqueue(ctx, JobRequest{Queue: "default", Payload: []byte("other"), IdempotencyKey: "k"})
	if err != nil || !again.Existing || again.ID != j.ID || string(again.Payload) != "hello" {
		t.Fatalf("repeat with the same key: %+v %v", again, err)
	}
	got, err := e.c.Get(ctx, j.ID)
	if err != nil || got.ID != j.ID || got.State != "queued" {
		t.Fatalf("get: %+v %v", got, err)
	}
	batch, err := e.c.EnqueueBatch(ctx, []JobRequest{{Queue: "a", Payload: []byte{0, 1, 2}}, {Queue: "b"}, {Queue: "a"}})
	if err != nil || len(batch) != 3 || batch[0].Queue != "a" || !bytes.Equal(batch[0].Payload, []byte{0, 1, 2}) {
		t.Fatalf("batch: %+v %v", batch, err)
	}
	page, err := e.c.List(ctx, ListOptions{Queue: "a", Limit: 1})
	if err != nil || len(page.Jobs) != 1 || page.Next == "" || page.Jobs[0].ID != batch[0].ID {
		t.Fatalf("list page 1: %+v %v", page, err)
	}
	page, err = e.c.List(ctx, ListOptions{Queue: "a", Limit: 1, After: page.Next})
	if err != nil || len(page.Jobs) != 1 || page.Next != "" || page.Jobs[0].ID != batch[2].ID {
		t.Fatalf("list page 2: %+v %v", page, err)
	}
	page, err = e.c.List(ctx, ListOptions{State: "queued"})
	if err != nil || len(page.Jobs) != 4 {
		t.Fatalf("list queued: %d %v", len(page.Jobs), err)
	}

	c, err := e.c.Cancel(ctx, j.ID)
	if err != nil || c.State != "cancelled" || c.FinishedAt == nil {
		t.Fatalf("cancel: %+v %v", c, err)
	}
	r, err := e.c.Retry(ctx, j.ID)
	if err != nil || r.State != "queued" || r.Attempt != 0 {
		t.Fatalf("retry: %+v %v", r, err)
	}
	_, err = e.c.Retry(ctx, j.ID)
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusConflict || ae.Code != "conflict" {
		t.Fatalf("retry of a queued job: %v", err)
	}
	_, err = e.c.Get(ctx, "nope")
	if !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Fatalf("get of an unknown job: %v", err)
	}
}

// The API shows results and never shows lease tokens.
func TestJobViewHidesLeaseToken(t *testing.T) {
	e := newEnv(t, queue.Options{})
	ctx := context.Background()
	j, err := e.c.Enqueue(ctx, JobRequest{Queue: "default"})
	if err != nil {
		t.Fatal(err)
	}
	l, err := e.q.Lease(ctx, queue.LeaseRequest{Worker: "w", Queues: []string{"default"}, Max: 1})
	if err != nil || len(l) != 1 {
		t.Fatal(l, err)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL()+"/v1/jobs/"+j.ID, nil)
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := e.c.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var raw map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&raw); err != nil {
		t.Fatal(err)
	}
	for k := range raw {
		if strings.Contains(k, "token") {
			t.Fatalf("the API shows %q", k)
		}
	}
	if raw["leased_by"] != "w" || raw["lease_deadline"] == nil {
		t.Fatalf("leased job view: %v", raw)
	}
	if _, err := e.q.Complete(ctx, "w", queue.Ref{JobID: j.ID, Attempt: 1, Token: l[0].LeaseToken}, []byte("out")); err != nil {
		t.Fatal(err)
	}
	got, err := e.c.Get(ctx, j.ID)
	if err != nil || got.State != "succeeded" || string(got.Result) != "out" || got.LeasedBy != "" {
		t.Fatalf("after complete: %+v %v", got, err)
	}
}

func (e *env) post(t *testing.T, path, ctype, body string) (int, ErrorBody) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	var eb ErrorBody
	_ = json.Unmarshal(rec.Body.Bytes(), &eb)
	return rec.Code, eb
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t, queue.Options{MaxPayload: 100})
	big := strings.Repeat("A", 400)
	tests := []struct {
		name, path, ctype, body string
		status                  int
		field                   string
	}{
		{"not json", "/v1/jobs", "", "queue=x", 400, ""},
		{"empty body", "/v1/jobs", "", "", 400, ""},
		{"unknown field", "/v1/jobs", "", `{"queue":"q","priority":1}`, 400, "priority"},
		{"wrong type", "/v1/jobs", "", `{"queue":"q","max_attempts":"3"}`, 400, "max_attempts"},
		{"trailing data", "/v1/jobs", "", `{"queue":"q"} {}`, 400, ""},
		{"bad base64", "/v1/jobs", "", `{"queue":"q","payload":"!!"}`, 400, ""},
		{"both payloads", "/v1/jobs", "", `{"queue":"q","payload":"aGk=","payload_text":"hi"}`, 400, "payload_text"},
		{"no queue", "/v1/jobs", "", `{"payload_text":"x"}`, 400, "queue"},
		{"bad lease", "/v1/jobs", "", `{"queue":"q","lease_duration":"soon"}`, 400, "lease_duration"},
		{"short lease", "/v1/jobs", "", `{"queue":"q","lease_duration":"1ms"}`, 400, "lease_duration"},
		{"bad time", "/v1/jobs", "", `{"queue":"q","run_after":"tomorrow"}`, 400, ""},
		{"payload over the cap", "/v1/jobs", "", `{"queue":"q","payload_text":"` + strings.Repeat("x", 101) + `"}`, 400, "payload"},
		{"body over the cap", "/v1/jobs", "", `{"queue":"q","payload":"` + big + strings.Repeat("A", 64<<10) + `"}`, 413, ""},
		{"wrong content type", "/v1/jobs", "text/plain", `{"queue":"q"}`, 415, ""},
		{"json look-alike", "/v1/jobs", "application/jsonx", `{"queue":"q"}`, 415, ""},
		{"form", "/v1/jobs", "application/x-www-form-urlencoded", `{"queue":"q"}`, 415, ""},
		{"empty batch", "/v1/jobs/batch", "", `{"jobs":[]}`, 400, "jobs"},
		{"bad job in batch", "/v1/jobs/batch", "", `{"jobs":[{"queue":"q"},{"queue":"b c"}]}`, 400, "jobs[1].queue"},
		{"bad lone job in batch", "/v1/jobs/batch", "", `{"jobs":[{"queue":""}]}`, 400, "jobs[0].queue"},
		{"cancel with a body", "/v1/jobs/x/cancel", "", `{"force":true}`, 400, ""},
		{"no such route", "/v1/queues", "", `{}`, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctype := tt.ctype
			if ctype == "" {
				ctype = "application/json"
			}
			status, eb := e.post(t, tt.path, ctype, tt.body)
			if status != tt.status || eb.Error.Message == "" || eb.Error.Field != tt.field {
				t.Fatalf("status %d, error %+v; want %d with field %q", status, eb.Error, tt.status, tt.field)
			}
		})
	}
	if c := e.q.Counts(); len(c) != 0 {
		t.Fatalf("refused requests enqueued jobs: %v", c)
	}
	for _, q := range []string{"?state=bogus", "?limit=0", "?limit=x", "?sort=id"} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, "/v1/jobs"+q, nil)
		req.Header.Set("Authorization", "Bearer "+e.token)
		e.h.ServeHTTP(rec, req)
		if rec.Code != 400 {
			t.Errorf("GET /v1/jobs%s: %d", q, rec.Code)
		}
	}
}

func TestQueueFullIs429(t *testing.T) {
	e := newEnv(t, queue.Options{MaxLiveJobs: 1})
	ctx := context.Background()
	if _, err := e.c.Enqueue(ctx, JobRequest{Queue: "q"}); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.Enqueue(ctx, JobRequest{Queue: "q"})
	var ae *Error
	if !errors.As(err, &ae) || ae.Status != http.StatusTooManyRequests || ae.Code != "queue_full" {
		t.Fatalf("enqueue past the limit: %v", err)
	}
}

// fuzzEnv is shared by a fuzz target's inputs (one bbolt file).
func fuzzCheck(t *testing.T, e *env, path string, body []byte) {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, req)
	switch {
	case rec.Code == 200 || rec.Code == 201:
		var jobs []Job
		if path == "/v1/jobs" {
			var j Job
			if err := json.Unmarshal(rec.Body.Bytes(), &j); err != nil {
				t.Fatalf("a 2xx answer that is not a job: %v", err)
			}
			jobs = []Job{j}
		} else {
			var br BatchResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &br); err != nil {
				t.Fatalf("a 2xx answer that is not a batch: %v", err)
			}
			jobs = br.Jobs
		}
		for _, j := range jobs {
			got, err := e.q.Get(context.Background(), j.ID)
			if err != nil || !bytes.Equal(got.Payload, j.Payload) {
				t.Fatalf("acknowledged job %s not stored as answered: %v", j.ID, err)
			}
		}
	case rec.Code >= 400 && rec.Code < 500:
		var eb ErrorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error.Code == "" || eb.Error.Message == "" {
			t.Fatalf("a %d without a proper error body: %q", rec.Code, rec.Body.String())
		}
	default:
		t.Fatalf("status %d for %q: %s", rec.Code, body, rec.Body.String())
	}
}

func FuzzEnqueueJSON(f *testing.F) {
	e := newEnv(f, queue.Options{MaxPayload: 1 << 10, MaxLiveJobs: 1 << 30})
	for _, s := range []string{
		`{"queue":"default","payload_text":"hi"}`,
		`{"queue":"q","payload":"AAEC","max_attempts":3,"lease_duration":"30s","idempotency_key":"k","run_after":"2030-01-02T03:04:05Z"}`,
		`{"queue":"q","lease_duration":"-1s"}`,
		`{"queue":"q","max_attempts":4294967296}`,
		`{"queue":"\u0000"}`, `[]`, `null`, `{"queue":"q"}{"x":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzCheck(t, e, "/v1/jobs", body) })
}

func FuzzBatchJSON(f *testing.F) {
	e := newEnv(f, queue.Options{MaxPayload: 1 << 10, MaxLiveJobs: 1 << 30})
	for _, s := range []string{
		`{"jobs":[{"queue":"a"},{"queue":"b","payload_text":"x","idempotency_key":"k"},{"queue":"b","idempotency_key":"k"}]}`,
		`{"jobs":null}`, `{"jobs":[{}]}`, `{"jobs":[1]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { fuzzCheck(t, e, "/v1/jobs/batch", body) })
}

func ExampleClient() {
	// The pin of relay's identity.crt (tunnel keys pin), and a token from
	// relay producers token.
	relayPin, err := keys.ParsePin("sha256/47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=")
	if err != nil {
		fmt.Println(err)
		return
	}
	c := &Client{BaseURL: "https://127.0.0.1:8080", HTTP: HTTPClient(ClientTLS(relayPin, nil), 30*time.Second), Token: os.Getenv("RELAY_TOKEN")}
	j, err := c.Enqueue(context.Background(), JobRequest{Queue: "default", PayloadText: `{"resize": "cat.png"}`, IdempotencyKey: "cat.png"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(j.ID, j.State)
}

// DELETE /v1/jobs/ID removes a finished job, refuses a live one 409, and
// needs the cancel action on the job's queue.
func TestDeleteJob(t *testing.T) {
	readA, readAHash, err := producers.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, queue.Options{},
		producers.Entry("reader-a", nil, []producers.TokenHash{readAHash}, map[string][]producers.Action{"a": {producers.Read}}))
	ctx := context.Background()
	j, err := e.c.Enqueue(ctx, JobRequest{Queue: "a", PayloadText: "1"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = e.c.Delete(ctx, j.ID)
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusConflict || !strings.Contains(ae.Message, "it is queued") {
		t.Fatalf("deleting a queued job: %v; want 409 saying it is queued", err)
	}
	if _, err := e.c.Cancel(ctx, j.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.client(nil, readA).Delete(ctx, j.ID)
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusForbidden {
		t.Fatalf("a reader deleted a job: %v; want 403", err)
	}
	got, err := e.c.Delete(ctx, j.ID)
	if err != nil || got.ID != j.ID || got.State != "cancelled" {
		t.Fatalf("delete: %+v, %v", got, err)
	}
	_, err = e.c.Get(ctx, j.ID)
	if ae, ok := err.(*Error); !ok || ae.Status != http.StatusNotFound {
		t.Fatalf("get after delete: %v; want 404", err)
	}
}
