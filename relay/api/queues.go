package api

import (
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tunnel-dev/tunnel/relay/producers"
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
}

func (h *handler) queues(w http.ResponseWriter, r *http.Request) {
	if len(r.URL.Query()) > 0 {
		writeError(w, http.StatusBadRequest, ErrorDetail{Code: "invalid_argument", Message: "GET /v1/queues takes no query parameters"})
		return
	}
	p := producerOf(r.Context())
	byName := map[string]*QueueInfo{}
	for k, n := range h.q.Counts() {
		if !p.May(k.Queue, producers.Read) {
			continue
		}
		qi := byName[k.Queue]
		if qi == nil {
			qi = &QueueInfo{Name: k.Queue, Counts: map[string]int{}}
			for _, s := range store.States() {
				qi.Counts[string(s)] = 0
			}
			byName[k.Queue] = qi
		}
		qi.Counts[string(k.State)] += n
	}
	out := QueuesResponse{Queues: make([]QueueInfo, 0, len(byName))}
	for _, qi := range byName {
		if qi.Counts[string(store.Queued)] > 0 {
			// Ids sort by creation: the first queued one is the oldest.
			jobs, _, err := h.q.List(r.Context(), store.Filter{Queue: qi.Name, State: store.Queued, Limit: 1})
			if err != nil {
				h.fail(w, err)
				return
			}
			if len(jobs) == 1 {
				at := jobs[0].CreatedAt.UTC()
				qi.OldestQueuedAt = &at
			}
		}
		out.Queues = append(out.Queues, *qi)
	}
	slices.SortFunc(out.Queues, func(a, b QueueInfo) int { return strings.Compare(a.Name, b.Name) })
	writeJSON(w, http.StatusOK, out)
}
