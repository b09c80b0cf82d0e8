package worker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	running      prometheus.Gauge
	succeeded    *prometheus.CounterVec
	failed       *prometheus.CounterVec
	lost         *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	reconnects   prometheus.Counter
	leaseWait    prometheus.Histogram
	connected    prometheus.Gauge
	pending      prometheus.Gauge
	settleErrors *prometheus.CounterVec
}

// failReasons are the reason label's values of bunny_jobs_failed_total.
func failReasons() []string { return []string{"handler", "cancelled", "shutdown", "rejected"} }

// newMetrics creates bunny's metrics, with every series of the queues it
// serves at zero from the start.
func newMetrics(reg prometheus.Registerer, queues []string) (*metrics, error) {
	m := &metrics{
		running: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bunny_jobs_running",
			Help: "Jobs whose handler is running."}),
		succeeded: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bunny_jobs_succeeded_total",
			Help: "Jobs whose result relay acknowledged."}, []string{"queue"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bunny_jobs_failed_total",
			Help: "Jobs failed back to relay, by reason: handler (it failed), cancelled (relay asked), shutdown (not finished within the grace), rejected (relay refused the result)."},
			[]string{"queue", "reason"}),
		lost: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bunny_leases_lost_total",
			Help: "Jobs dropped because relay said their lease was no longer this worker's."}, []string{"queue"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "bunny_handler_duration_seconds",
			Help:    "How long handlers ran, by outcome (ok or error).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12)}, []string{"queue", "outcome"}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "bunny_reconnects_total",
			Help: "Connections to relay made after the first."}),
		leaseWait: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "bunny_lease_wait_seconds",
			Help:    "From a slot being free and asking relay for work to receiving jobs (long polls included).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10)}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bunny_connected",
			Help: "1 while a connection to relay is up."}),
		pending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "bunny_results_pending",
			Help: "Results and failures held until relay acknowledges them."}),
		settleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "bunny_settle_retries_total",
			Help: "Complete and fail calls retried, by call."}, []string{"call"}),
	}
	for _, q := range queues {
		m.succeeded.WithLabelValues(q)
		m.lost.WithLabelValues(q)
		for _, r := range failReasons() {
			m.failed.WithLabelValues(q, r)
		}
		for _, o := range []string{"ok", "error"} {
			m.duration.WithLabelValues(q, o)
		}
	}
	for _, call := range []string{"complete", "fail"} {
		m.settleErrors.WithLabelValues(call)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.running, m.succeeded, m.failed, m.lost, m.duration, m.reconnects, m.leaseWait, m.connected, m.pending, m.settleErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering bunny's metrics: %w", err)
		}
	}
	return m, nil
}
