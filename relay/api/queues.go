package api

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/relay/producers"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// QueuesResponse is the body of GET /v1/queues: the queues that hold jobs
// and that the producer may read, by name.
type QueuesResponse struct {
	Queues []QueueInfo `json:"queues"`
}

// QueueInfo is one queue's jobs.
type QueueInfo struct {
	Name string `json:"name"`
	// Counts is the number of jobs in each state, every state listed (it
	// may lag a few seconds behind on a shared database).
	Counts map[string]int `json:"counts"`
	// OldestQueuedAt is when the oldest queued job was created (a job
	// held back by run_after counts too); nil when none is queued.
	OldestQueuedAt *time.Time `json:"oldest_queued_at,omitempty"`
	// Paused is set while the queue's jobs are not leased (POST
	// /v1/queues/NAME/pause); a paused queue is listed even with no jobs.
	Paused bool `json:"paused"`
	// Rate is what the queue's jobs did lately.
	Rate QueueRate `json:"rate"`
}

// QueueRate is jobs per second over the last WindowSeconds: on
// PostgreSQL every replica's, on the embedded store since relay started.
type QueueRate struct {
	WindowSeconds      int     `json:"window_seconds"`
	EnqueuedPerSecond  float64 `json:"enqueued_per_second"`
	CompletedPerSecond float64 `json:"completed_per_second"`
	// FailedPerSecond counts jobs that ended failed or dead, not attempts
	// that will be retried.
	FailedPerSecond float64 `json:"failed_per_second"`
}

func queueRate(r queue.Rate) QueueRate {
	return QueueRate{
		WindowSeconds:      int(queue.RateWindow / time.Second),
		EnqueuedPerSecond:  queue.PerSecond(r.Enqueued),
		CompletedPerSecond: queue.PerSecond(r.Completed),
		FailedPerSecond:    queue.PerSecond(r.Failed),
	}
}

// PauseResponse is the body of POST /v1/queues/NAME/pause and /resume.
type PauseResponse struct {
	Name   string `json:"name"`
	Paused bool   `json:"paused"`
}

func (h *handler) queues(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Message: "GET /v1/queues takes no query parameters"})
		return
	}
	p := producerOf(r.Context())
	qs, err := Summarize(r.Context(), h.q, func(name string) bool { return p.May(name, producers.Read) })
	if err != nil {
		h.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, QueuesResponse{Queues: qs})
}

// Summarize is every queue that holds jobs, is paused or was busy lately
// and that may(name) allows, sorted by name: GET /v1/queues, and relay's
// admin /status.
func Summarize(ctx context.Context, q queue.Backend, may func(name string) bool) ([]QueueInfo, error) {
	byName := map[string]*QueueInfo{}
	info := func(name string) *QueueInfo {
		qi := byName[name]
		if qi == nil {
			qi = &QueueInfo{Name: name, Counts: map[string]int{}, Rate: queueRate(queue.Rate{})}
			for _, s := range store.States() {
				qi.Counts[string(s)] = 0
			}
			byName[name] = qi
		}
		return qi
	}
	for k, n := range q.Counts() {
		if may(k.Queue) {
			info(k.Queue).Counts[string(k.State)] += n
		}
	}
	paused, err := q.Paused(ctx)
	if err != nil {
		return nil, err
	}
	for _, name := range paused {
		if may(name) {
			info(name).Paused = true
		}
	}
	rates, err := q.Rates(ctx)
	if err != nil {
		return nil, err
	}
	for name, rate := range rates {
		if may(name) {
			info(name).Rate = queueRate(rate)
		}
	}
	out := make([]QueueInfo, 0, len(byName))
	for _, qi := range byName {
		if qi.Counts[string(store.Queued)] > 0 {
			// Ids sort by creation: the first queued one is the oldest.
			jobs, _, err := q.List(ctx, store.Filter{Queue: qi.Name, State: store.Queued, Limit: 1})
			if err != nil {
				return nil, err
			}
			if len(jobs) == 1 {
				at := jobs[0].CreatedAt.UTC()
				qi.OldestQueuedAt = &at
			}
		}
		out = append(out, *qi)
	}
	slices.SortFunc(out, func(a, b QueueInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// pause serves POST /v1/queues/{name}/pause and /resume. Pausing stops
// work as cancelling does, so it needs the cancel action on the queue.
func (h *handler) pause(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !h.emptyBody(w, r) {
			return
		}
		name := r.PathValue("name")
		if err := queue.CheckQueueName(name); err != nil {
			h.fail(w, err)
			return
		}
		if !producerOf(r.Context()).May(name, producers.Cancel) {
			h.guard.forbid(w, r, "queue", name, producers.Cancel)
			return
		}
		do := h.q.Resume
		if paused {
			do = h.q.Pause
		}
		if err := do(r.Context(), name); err != nil {
			h.fail(w, err)
			return
		}
		writeJSON(w, http.StatusOK, PauseResponse{Name: name, Paused: paused})
	}
}
