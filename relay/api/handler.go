package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Options configure the handler.
type Options struct {
	Queue queue.Backend
	// MaxPayload is the payload cap the queue enforces, used to size the
	// body limit (1 MiB).
	MaxPayload int
	// MaxBatchBody bounds a batch request's body (32 MiB).
	MaxBatchBody int64
	// Producers returns the producers configuration in force (a
	// producers.Watcher's Config); every request is authenticated and
	// authorised by it. Required.
	Producers func() *producers.Config
	Logger    *slog.Logger
	// Registerer receives relay_producer_auth_failures_total; nil
	// registers none.
	Registerer prometheus.Registerer
}

type handler struct {
	opts  Options
	q     queue.Backend
	log   *slog.Logger
	guard *guard
}

// NewHandler serves the API under /v1/, to authenticated producers only.
func NewHandler(opts Options) (http.Handler, error) {
	if opts.Queue == nil || opts.Producers == nil {
		return nil, errors.New("api: a queue and a producers configuration are required")
	}
	if opts.MaxPayload <= 0 {
		opts.MaxPayload = 1 << 20
	}
	if opts.MaxBatchBody <= 0 {
		opts.MaxBatchBody = 32 << 20
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	g, err := newGuard(opts.Producers, opts.Registerer, opts.Logger)
	if err != nil {
		return nil, err
	}
	h := &handler{opts: opts, q: opts.Queue, log: opts.Logger, guard: g}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/jobs", h.enqueue)
	mux.HandleFunc("POST /v1/jobs/batch", h.batch)
	mux.HandleFunc("GET /v1/jobs", h.list)
	mux.HandleFunc("GET /v1/jobs/{id}", h.get)
	mux.HandleFunc("POST /v1/jobs/{id}/cancel", h.cancel)
	mux.HandleFunc("POST /v1/jobs/{id}/retry", h.retry)
	mux.HandleFunc("DELETE /v1/jobs/{id}", h.delete)
	mux.HandleFunc("GET /v1/queues", h.queues)
	mux.HandleFunc("POST /v1/queues/{name}/pause", h.pause(true))
	mux.HandleFunc("POST /v1/queues/{name}/resume", h.pause(false))
	mux.HandleFunc("/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, ErrorDetail{Code: "not_found",
			Message: fmt.Sprintf("no API at %s %s; see docs/relay.md", r.Method, r.URL.Path)})
	})
	return g.wrap(mux), nil
}

// singleBody bounds one job's request: its payload in base64 and room for
// the rest.
func (h *handler) singleBody() int64 { return int64(h.opts.MaxPayload)*4/3 + 64<<10 }

func (h *handler) enqueue(w http.ResponseWriter, r *http.Request) {
	var req JobRequest
	if !h.decode(w, r, h.singleBody(), &req) {
		return
	}
	if !h.mayEnqueue(w, r, "queue", req.Queue) {
		return
	}
	nj, err := toNewJob(&req, "")
	if err != nil {
		h.fail(w, err)
		return
	}
	res, err := h.q.Enqueue(r.Context(), []queue.NewJob{nj})
	if err != nil {
		h.fail(w, err)
		return
	}
	v := viewOf(res[0].Job)
	v.Existing = res[0].Existing
	status := http.StatusCreated
	if v.Existing {
		status = http.StatusOK
	}
	writeJSON(w, status, v)
}

func (h *handler) batch(w http.ResponseWriter, r *http.Request) {
	var req BatchRequest
	if !h.decode(w, r, h.opts.MaxBatchBody, &req) {
		return
	}
	if len(req.Jobs) == 0 {
		writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Field: "jobs", Message: "jobs: empty; give at least one job"})
		return
	}
	if len(req.Jobs) > queue.MaxBatch {
		writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Field: "jobs",
			Message: fmt.Sprintf("jobs: %d jobs; at most %d in one batch", len(req.Jobs), queue.MaxBatch)})
		return
	}
	for i := range req.Jobs {
		if !h.mayEnqueue(w, r, fmt.Sprintf("jobs[%d].queue", i), req.Jobs[i].Queue) {
			return
		}
	}
	njs := make([]queue.NewJob, len(req.Jobs))
	for i := range req.Jobs {
		nj, err := toNewJob(&req.Jobs[i], fmt.Sprintf("jobs[%d].", i))
		if err != nil {
			h.fail(w, err)
			return
		}
		njs[i] = nj
	}
	res, err := h.q.Enqueue(r.Context(), njs)
	var ie *queue.InvalidError
	if errors.As(err, &ie) && len(njs) == 1 && !strings.HasPrefix(ie.Field, "jobs") {
		err = &queue.InvalidError{Field: "jobs[0]." + ie.Field, Problem: ie.Problem}
	}
	if err != nil {
		h.fail(w, err)
		return
	}
	out := BatchResponse{Jobs: make([]Job, len(res))}
	for i, e := range res {
		out.Jobs[i] = viewOf(e.Job)
		out.Jobs[i].Existing = e.Existing
	}
	writeJSON(w, http.StatusOK, out)
}

func toNewJob(r *JobRequest, prefix string) (queue.NewJob, error) {
	nj := queue.NewJob{Queue: r.Queue, Payload: r.Payload, MaxAttempts: r.MaxAttempts, IdempotencyKey: r.IdempotencyKey}
	if r.PayloadText != "" {
		if len(r.Payload) > 0 {
			return nj, &queue.InvalidError{Field: prefix + "payload_text", Problem: "give payload (base64) or payload_text, not both"}
		}
		nj.Payload = []byte(r.PayloadText)
	}
	if r.LeaseDuration != "" {
		d, err := time.ParseDuration(r.LeaseDuration)
		if err != nil {
			return nj, &queue.InvalidError{Field: prefix + "lease_duration", Problem: fmt.Sprintf("%q is not a duration such as 30s or 5m", r.LeaseDuration)}
		}
		if d <= 0 {
			return nj, &queue.InvalidError{Field: prefix + "lease_duration", Problem: fmt.Sprintf("%s; want a positive duration", d)}
		}
		nj.LeaseDuration = d
	}
	if r.RunAfter != nil {
		nj.RunAfter = *r.RunAfter
	}
	// The queue checks the rest.
	return nj, nil
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) {
	j, ok := h.job(w, r, producers.Read)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, viewOf(j))
}

// mayEnqueue refuses, 403, an enqueue to a queue the producer may not
// enqueue to. A name that is no queue's passes, for the queue to refuse
// (400, naming the field).
func (h *handler) mayEnqueue(w http.ResponseWriter, r *http.Request, field, q string) bool {
	if proto.CheckName("queue", q) != nil || producerOf(r.Context()).May(q, producers.Enqueue) {
		return true
	}
	h.guard.forbid(w, r, field, q, producers.Enqueue)
	return false
}

// job fetches the job of the request's path for action a. A job in a
// queue the producer may neither read nor act on is answered exactly as
// an unknown id is, so that nobody learns which queue any id belongs to;
// one it may read but not act on is refused, 403.
func (h *handler) job(w http.ResponseWriter, r *http.Request, a producers.Action) (store.Job, bool) {
	id := r.PathValue("id")
	p := producerOf(r.Context())
	notFound := ErrorDetail{Code: "not_found", Message: fmt.Sprintf("job %q not found", abbreviate(id))}
	j, err := h.q.Get(r.Context(), id)
	switch {
	case errors.Is(err, queue.ErrNotFound):
		writeError(w, http.StatusNotFound, notFound)
	case err != nil:
		h.fail(w, err)
	case p.May(j.Queue, a):
		return j, true
	case p.May(j.Queue, producers.Read):
		h.guard.forbid(w, r, "", j.Queue, a)
	default:
		h.guard.refuse(w, r, p, reasonForbidden, http.StatusNotFound, notFound, "")
	}
	return j, false
}

// view is the job as p may see it: without payload and result unless p
// may read its queue.
func view(p *producers.Producer, j store.Job) Job {
	v := viewOf(j)
	if !p.May(j.Queue, producers.Read) {
		v.Payload, v.Result = []byte{}, nil
	}
	return v
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) {
	qv := r.URL.Query()
	for k := range qv {
		switch k {
		case "queue", "state", "limit", "after":
		default:
			writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Field: k,
				Message: fmt.Sprintf("unknown query parameter %q; known: queue, state, limit, after", k)})
			return
		}
	}
	p := producerOf(r.Context())
	f := store.Filter{Queue: qv.Get("queue"), After: qv.Get("after")}
	if f.Queue != "" && !p.May(f.Queue, producers.Read) {
		h.guard.forbid(w, r, "queue", f.Queue, producers.Read)
		return
	}
	if s := qv.Get("state"); s != "" {
		st, err := store.ParseState(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Field: "state", Message: err.Error()})
			return
		}
		f.State = st
	}
	if s := qv.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Field: "limit", Message: fmt.Sprintf("limit %q: want 1 to 1000", s)})
			return
		}
		f.Limit = n
	}
	jobs, next, err := h.q.List(r.Context(), f)
	if err != nil {
		h.fail(w, err)
		return
	}
	// Without a queue, a page holds only the jobs of queues p may read:
	// it may be short, or empty with a next cursor.
	out := ListResponse{Jobs: make([]Job, 0, len(jobs)), Next: next}
	for _, j := range jobs {
		if p.May(j.Queue, producers.Read) {
			out.Jobs = append(out.Jobs, viewOf(j))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *handler) cancel(w http.ResponseWriter, r *http.Request) {
	if !h.emptyBody(w, r) {
		return
	}
	if _, ok := h.job(w, r, producers.Cancel); !ok {
		return
	}
	j, err := h.q.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, view(producerOf(r.Context()), j))
}

func (h *handler) retry(w http.ResponseWriter, r *http.Request) {
	if !h.emptyBody(w, r) {
		return
	}
	if _, ok := h.job(w, r, producers.Retry); !ok {
		return
	}
	j, err := h.q.Retry(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, view(producerOf(r.Context()), j))
}

// delete removes a finished job; it needs the cancel action on the
// job's queue, as pausing does.
func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	if !h.emptyBody(w, r) {
		return
	}
	if _, ok := h.job(w, r, producers.Cancel); !ok {
		return
	}
	j, err := h.q.Delete(r.Context(), r.PathValue("id"))
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, view(producerOf(r.Context()), j))
}

// emptyBody refuses a body on calls that take none (anything but "" or
// "{}").
func (h *handler) emptyBody(w http.ResponseWriter, r *http.Request) bool {
	b, err := io.ReadAll(io.LimitReader(r.Body, 1024))
	if err != nil {
		writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Message: "reading the body: " + err.Error()})
		return false
	}
	if s := strings.TrimSpace(string(b)); s != "" && s != "{}" {
		writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Message: "this call takes no body"})
		return false
	}
	return true
}

// decode reads a strict JSON body into v.
func (h *handler) decode(w http.ResponseWriter, r *http.Request, limit int64, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("data after the JSON value")
		}
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeError(w, http.StatusRequestEntityTooLarge, ErrorDetail{Code: "too_large",
			Message: fmt.Sprintf("body over %d bytes; a payload is at most %d bytes (base64 makes it 4/3 larger)", limit, h.opts.MaxPayload)})
		return false
	}
	d := ErrorDetail{Code: "invalid_argument", Message: "malformed JSON body: " + err.Error()}
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &te):
		d.Field = te.Field
		d.Message = fmt.Sprintf("%s: want a JSON %s, got %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		d.Field = f
		d.Message = fmt.Sprintf("unknown field %q", f)
	case errors.Is(err, io.EOF):
		d.Message = "empty body; send a JSON object"
	}
	writeError(w, http.StatusBadRequest, d)
	return false
}

func jsonKind(k string) string {
	switch k {
	case "uint32", "int", "int64", "uint64":
		return "number"
	case "slice":
		return "array (or base64 string for bytes)"
	case "struct", "ptr":
		return "object (or RFC 3339 time)"
	}
	return k
}

// fail writes the response for a queue error.
func (h *handler) fail(w http.ResponseWriter, err error) {
	var ie *queue.InvalidError
	switch {
	case errors.As(err, &ie):
		writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Field: ie.Field, Message: ie.Error()})
	case errors.Is(err, queue.ErrNotFound):
		writeError(w, http.StatusNotFound, ErrorDetail{Code: "not_found", Message: err.Error()})
	case errors.Is(err, queue.ErrConflict):
		writeError(w, http.StatusConflict, ErrorDetail{Code: "conflict", Message: err.Error()})
	case errors.Is(err, queue.ErrFull):
		w.Header().Set("Retry-After", "5")
		writeError(w, http.StatusTooManyRequests, ErrorDetail{Code: "queue_full", Message: err.Error()})
	case errors.Is(err, queue.ErrOverloaded):
		w.Header().Set("Retry-After", "1")
		writeError(w, http.StatusServiceUnavailable, ErrorDetail{Code: "overloaded", Message: err.Error()})
	case errors.Is(err, queue.ErrClosed):
		writeError(w, http.StatusServiceUnavailable, ErrorDetail{Code: "unavailable", Message: err.Error()})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		writeError(w, http.StatusServiceUnavailable, ErrorDetail{Code: "unavailable", Message: "the request ended before relay finished: " + err.Error()})
	default:
		h.log.Error("API call failed", "err", err)
		writeError(w, http.StatusInternalServerError, ErrorDetail{Code: "internal", Message: err.Error()})
	}
}

func writeError(w http.ResponseWriter, status int, d ErrorDetail) {
	writeJSON(w, status, ErrorBody{Error: d})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
