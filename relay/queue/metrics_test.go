package queue

import (
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tunnel-dev/tunnel/internal/metricstest"
)

func (h *harness) scrape() metricstest.Scrape {
	h.t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(h.reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	return metricstest.Get(h.t, srv.URL)
}

// A queue's series exist at zero from its first job, from Open for the
// queues in the store, and from DeclareQueues for the ones named ahead.
func TestMetricsExistFromStart(t *testing.T) {
	h := newHarness(t, Options{})
	h.scrape().Require(t, `relay_fenced_total{call="complete"}=0`, `relay_fenced_total{call="heartbeat"}=0`, `relay_fenced_total{call="fail"}=0`)

	h.enqueue(NewJob{Queue: "a", Payload: []byte("x")})
	h.scrape().Require(t,
		`relay_enqueued_total{queue="a"}=1`,
		`relay_failures_total{outcome="dead",queue="a"}=0`,
		`relay_failures_total{outcome="cancelled",queue="a"}=0`,
		`relay_completions_total{queue="a"}=0`,
		`relay_jobs{queue="a",state="queued"}=1`,
		`relay_jobs{queue="a",state="dead"}=0`,
	)

	h.reopen()
	h.q.DeclareQueues("b")
	h.scrape().Require(t,
		`relay_enqueued_total{queue="a"}=0`, // a new process: counters restart
		`relay_jobs{queue="a",state="queued"}=1`,
		`relay_leases_total{queue="b"}=0`,
		`relay_failures_total{outcome="retrying",queue="b"}=0`,
		`relay_jobs{queue="b",state="succeeded"}=0`,
	)
}
