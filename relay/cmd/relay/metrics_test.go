package main

import (
	"testing"

	"github.com/tunnel-dev/tunnel/internal/buildinfo"
	"github.com/tunnel-dev/tunnel/internal/metricstest"
)

// Right after start, before any job or worker, every counter relay has is
// on /metrics at zero for the labels it knows (its workers file's queues,
// every outcome, reason and call), and so is every metric docs/relay.md
// names.
func TestMetricsAtStart(t *testing.T) {
	s := newSetup(t)
	p := startRelay(t, s)
	m := metricstest.Get(t, p.admin+"/metrics")
	b := buildinfo.Read()
	m.Require(t,
		`relay_build_info{goversion="`+b.GoVersion+`",revision="`+b.Revision+`",version="`+b.Version+`"}=1`,
		"relay_workers=1",
		"relay_worker_connections=0",
		`relay_workers_reloads_total{result="ok"}=0`,
		`relay_workers_reloads_total{result="error"}=0`,
		`relay_jobs{queue="default",state="queued"}=0`,
		`relay_jobs{queue="default",state="dead"}=0`,
		`relay_enqueued_total{queue="default"}=0`,
		`relay_leases_total{queue="default"}=0`,
		`relay_completions_total{queue="default"}=0`,
		`relay_failures_total{outcome="dead",queue="default"}=0`,
		`relay_failures_total{outcome="retrying",queue="default"}=0`,
		`relay_lease_expirations_total{queue="default"}=0`,
		`relay_cancels_total{queue="default"}=0`,
		`relay_fenced_total{call="heartbeat"}=0`,
		`relay_refused_total{reason="unknown_identity"}=0`,
		`relay_refused_total{reason="overloaded"}=0`,
		`relay_calls_total{call="lease",code="OK"}=0`,
		`relay_call_duration_seconds_count{call="complete"}=0`,
		"relay_producers=2",
		`relay_producers_reloads_total{result="ok"}=0`,
		`relay_producer_auth_failures_total{reason="unknown_token"}=0`,
		`relay_producer_auth_failures_total{reason="cross_origin"}=0`,
	)
	m.RequireFamilies(t, metricstest.Documented(t, "../../../docs/relay.md", "relay_")...)
}
