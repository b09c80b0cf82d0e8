package server

import (
	"fmt"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/relay/proto"
)

// callNames are the calls a worker makes (the call label).
func callNames() []string {
	return []string{"lease", "heartbeat", "complete", "complete_batch", "fail"}
}

// refusalReasons are the reason label's values: every series exists at
// zero from the start.
func refusalReasons() []string {
	return []string{"unknown_identity", "credentials_revoked", "unauthorized_queue", "unauthorized_action",
		"bad_frame", "version", "invalid_argument", "overloaded", "read_budget", "large_calls", "connection_limit"}
}

type metrics struct {
	connections prometheus.Gauge
	calls       *prometheus.CounterVec
	callSeconds *prometheus.HistogramVec
	refused     *prometheus.CounterVec
	reading     prometheus.Gauge
	largeCalls  prometheus.Gauge
	// Lease sessions (sessions.go).
	answersLost     prometheus.Counter
	sessionsEvicted prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		connections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_worker_connections",
			Help: "Worker QUIC connections open.",
		}),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_calls_total",
			Help: "Worker calls answered, by call and result code.",
		}, []string{"call", "code"}),
		callSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "relay_call_duration_seconds",
			Help:    "Worker call duration, request read to response written (a lease includes its long poll).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2.5, 16),
		}, []string{"call"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_refused_total",
			Help: "Worker connections and calls refused, by reason: " + strings.Join(refusalReasons(), ", ") + ".",
		}, []string{"reason"}),
		reading: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_request_bytes_reserved",
			Help: "Bytes of the shared read budget held by request frames being read or served.",
		}),
		largeCalls: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_large_calls",
			Help: "Calls in flight whose request frame is over 64 KiB, over every connection.",
		}),
		answersLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_lease_answers_lost_total",
			Help: "Leased jobs whose Lease answer the worker's next call says it never read (lost with a connection): undone, ready again at the attempt they had.",
		}),
		sessionsEvicted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "relay_lease_sessions_evicted_total",
			Help: "Lease sessions forgotten because their worker name had too many; an answer of theirs that was lost waits for its leases to expire.",
		}),
	}
	for _, call := range callNames() {
		m.calls.WithLabelValues(call, proto.Code_OK.String())
		m.callSeconds.WithLabelValues(call)
	}
	for _, r := range refusalReasons() {
		m.refused.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.connections, m.calls, m.callSeconds, m.refused, m.reading, m.largeCalls, m.answersLost, m.sessionsEvicted} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering server metrics: %w", err)
		}
	}
	return m, nil
}
