package queue

import (
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/relay/store"
)

type metrics struct {
	enqueued     *prometheus.CounterVec
	leases       *prometheus.CounterVec
	redeliveries *prometheus.CounterVec
	completions  *prometheus.CounterVec
	failures     *prometheus.CounterVec
	expirations  *prometheus.CounterVec
	released     *prometheus.CounterVec
	cancels      *prometheus.CounterVec
	retries      *prometheus.CounterVec
	fenced       *prometheus.CounterVec
	waiters      prometheus.Gauge
	leaseLatency prometheus.Histogram
	jobWait      prometheus.Histogram

	declaredMu sync.Mutex
	declared   map[string]bool // queues whose series exist at zero
}

// failureOutcomes are what a job whose attempt ended badly can become.
func failureOutcomes() []store.State {
	return []store.State{store.Retrying, store.Failed, store.Dead, store.Cancelled}
}

// allStates are the states relay_jobs reports for every known queue.
func allStates() []store.State {
	return []store.State{store.Queued, store.Leased, store.Retrying, store.Succeeded, store.Failed, store.Dead, store.Cancelled}
}

func newMetrics(q *Queue, reg prometheus.Registerer) (*metrics, error) {
	byQueue := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"queue"})
	}
	m := &metrics{
		enqueued:     byQueue("relay_enqueued_total", "Jobs enqueued (not counting idempotent repeats)."),
		leases:       byQueue("relay_leases_total", "Leases granted."),
		redeliveries: byQueue("relay_redeliveries_total", "Leases granted for a job's second or later attempt."),
		completions:  byQueue("relay_completions_total", "Jobs completed."),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_failures_total",
			Help: "Attempts that ended badly (failed by the worker, expired or released), by what the job became.",
		}, []string{"queue", "outcome"}),
		expirations: byQueue("relay_lease_expirations_total", "Leases that expired without a heartbeat or an answer."),
		released:    byQueue("relay_lease_releases_total", "Leases released because the worker's heartbeat did not list them."),
		cancels:     byQueue("relay_cancels_total", "Jobs cancelled, or asked to stop."),
		retries:     byQueue("relay_manual_retries_total", "Dead, failed or cancelled jobs put back by hand."),
		fenced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_fenced_total",
			Help: "Calls naming a lease that is no longer the caller's (LEASE_LOST), by call.",
		}, []string{"call"}),
		waiters: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "relay_lease_waiters",
			Help: "Long polls waiting for a job.",
		}),
		leaseLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_lease_latency_seconds",
			Help:    "From jobs being available to a long poll until their leases are durable.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		jobWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "relay_job_wait_seconds",
			Help:    "From a job being ready until it is leased (schedule-to-start).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 12),
		}),
	}
	m.declared = map[string]bool{}
	for _, call := range []string{"heartbeat", "complete", "fail"} {
		m.fenced.WithLabelValues(call)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.enqueued, m.leases, m.redeliveries, m.completions, m.failures,
		m.expirations, m.released, m.cancels, m.retries, m.fenced, m.waiters, m.leaseLatency, m.jobWait, newDepthCollector(q, m)} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering queue metrics: %w", err)
		}
	}
	return m, nil
}

// declare creates every per-queue series of the named queues at zero, so
// that rates and alerts see a queue before its first event.
func (m *metrics) declare(names ...string) {
	m.declaredMu.Lock()
	defer m.declaredMu.Unlock()
	for _, name := range names {
		if m.declared[name] {
			continue
		}
		m.declared[name] = true
		for _, c := range []*prometheus.CounterVec{m.enqueued, m.leases, m.redeliveries, m.completions,
			m.expirations, m.released, m.cancels, m.retries} {
			c.WithLabelValues(name)
		}
		for _, o := range failureOutcomes() {
			m.failures.WithLabelValues(name, string(o))
		}
	}
}

func (m *metrics) declaredQueues() []string {
	m.declaredMu.Lock()
	defer m.declaredMu.Unlock()
	out := make([]string, 0, len(m.declared))
	for name := range m.declared {
		out = append(out, name)
	}
	return out
}

// DeclareQueues makes the named queues' metrics exist at zero before their
// first job (relay serve names the queues of its workers file).
func (q *Queue) DeclareQueues(names ...string) { q.m.declare(names...) }

// depthCollector reports the number of jobs by queue and state: every
// state of a declared queue, zero or not, and any other non-zero one.
type depthCollector struct {
	q    *Queue
	m    *metrics
	desc *prometheus.Desc
}

func newDepthCollector(q *Queue, m *metrics) depthCollector {
	return depthCollector{q: q, m: m, desc: prometheus.NewDesc("relay_jobs", "Jobs by queue and state (queue depth).", []string{"queue", "state"}, nil)}
}

func (d depthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- d.desc }

func (d depthCollector) Collect(ch chan<- prometheus.Metric) {
	counts := d.q.Counts()
	for _, name := range d.m.declaredQueues() {
		for _, st := range allStates() {
			k := store.QueueState{Queue: name, State: st}
			ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(counts[k]), name, string(st))
			delete(counts, k)
		}
	}
	for k, n := range counts {
		ch <- prometheus.MustNewConstMetric(d.desc, prometheus.GaugeValue, float64(n), k.Queue, string(k.State))
	}
}
