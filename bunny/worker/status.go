package worker

import (
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// Status is what the worker is doing, for bunny's /status.
type Status struct {
	// Relay is relay's address as dialled: the path in use while
	// connected, every address (comma-separated) otherwise.
	Relay string `json:"relay"`
	// Connected says whether a connection is up; Since is when it came
	// up, or when it was lost (zero if it never came up).
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`
	// Reconnects counts connections made after the first.
	Reconnects int `json:"reconnects"`
	// Problem is the last failed dial or lost connection: what happened
	// and what to check. It stays until the next one, connected or not.
	Problem *Problem `json:"problem,omitempty"`
	// Slots is the most jobs held at once; Busy how many are held now.
	Slots  int           `json:"slots"`
	Busy   int           `json:"busy"`
	Queues []QueueStatus `json:"queues"`
}

// Problem is one failed dial or lost connection.
type Problem struct {
	At time.Time `json:"at"`
	// Message says what happened, naming the address; Hint what to check
	// (may be empty); Error is the error itself.
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
	Error   string `json:"error"`
}

// QueueStatus is one queue's jobs since bunny started.
type QueueStatus struct {
	Name      string `json:"name"`
	Running   int    `json:"running"`
	Succeeded int    `json:"succeeded"`
	Failed    int    `json:"failed"`
}

// connStatus follows the connection for Status.
type connStatus struct {
	mu         sync.Mutex
	up         bool
	since      time.Time
	reconnects int
	problem    *Problem
}

func (s *connStatus) connected() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.since.IsZero() {
		s.reconnects++
	}
	s.up, s.since = true, time.Now()
}

// failed records a failed dial (up stays false) or a lost connection. A
// message with no hint of its own, such as dialProblem's, keeps what to
// check in its closing parenthesis: that becomes the hint.
func (s *connStatus) failed(msg, hint string, err error) {
	if i := strings.Index(msg, " ("); hint == "" && i > 0 && strings.HasSuffix(msg, ")") {
		msg, hint = msg[:i], msg[i+2:len(msg)-1]
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.up {
		s.since = time.Now()
	}
	s.up = false
	s.problem = &Problem{At: time.Now().UTC(), Message: msg, Hint: hint}
	if err != nil {
		s.problem.Error = err.Error()
	}
}

// Status is what the worker is doing now.
func (w *Worker) Status() Status {
	st := Status{Relay: w.addrs(), Slots: w.opts.Concurrency}
	w.status.mu.Lock()
	st.Connected, st.Since, st.Reconnects = w.status.up, w.status.since.UTC(), w.status.reconnects
	if p := w.status.problem; p != nil {
		cp := *p
		st.Problem = &cp
	}
	w.status.mu.Unlock()
	running := map[string]int{}
	w.mu.Lock()
	if w.cur != nil {
		st.Relay = w.cur.Path()
	}
	st.Busy = len(w.held)
	for _, h := range w.held {
		running[h.job.Queue]++
	}
	w.mu.Unlock()
	for _, q := range w.queues {
		qs := QueueStatus{Name: q, Running: running[q], Succeeded: count(w.m.succeeded.WithLabelValues(q))}
		for _, r := range failReasons() {
			qs.Failed += count(w.m.failed.WithLabelValues(q, r))
		}
		st.Queues = append(st.Queues, qs)
	}
	return st
}

// count reads a counter's value.
func count(c prometheus.Counter) int {
	var m dto.Metric
	if c.Write(&m) != nil {
		return 0
	}
	return int(m.GetCounter().GetValue())
}
