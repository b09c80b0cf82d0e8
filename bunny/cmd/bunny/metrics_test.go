package main

import (
	"os/exec"
	"runtime"
	"testing"

	"github.com/tunnel-dev/tunnel/internal/metricstest"
	"github.com/tunnel-dev/tunnel/internal/relaytest"
)

// The stamped build reports itself in --version and bunny_build_info, and
// right after start, before any job, every series of bunny's queues is on
// /metrics at zero, and so is every metric docs/bunny.md names.
func TestMetricsAtStart(t *testing.T) {
	bin := buildBunny(t)
	if out, err := exec.Command(bin, "--version").Output(); err != nil || string(out) != "bunny v9.9.9-test (revision feedface, "+runtime.Version()+")\n" {
		t.Fatalf("--version: %q %v", out, err)
	}
	f := newFiles(t)
	r := relaytest.Start(t, relaytest.Options{Worker: f.id, Queues: []string{"default"}})
	cfg := f.config(t, r.Addr, r.ID.Pin(), "", "/bin/cat")
	p := startBunny(t, bin, "run", "--config", cfg, "--log-format", "json")
	adminURL := p.adminURL(t)
	m := metricstest.Get(t, adminURL+"/metrics")
	m.Require(t,
		`bunny_build_info{goversion="`+runtime.Version()+`",revision="feedface",version="v9.9.9-test"}=1`,
		"bunny_jobs_running=0",
		`bunny_jobs_succeeded_total{queue="default"}=0`,
		`bunny_jobs_failed_total{queue="default",reason="handler"}=0`,
		`bunny_jobs_failed_total{queue="default",reason="shutdown"}=0`,
		`bunny_leases_lost_total{queue="default"}=0`,
		`bunny_handler_duration_seconds_count{outcome="error",queue="default"}=0`,
		`bunny_settle_retries_total{call="complete"}=0`,
		"bunny_reconnects_total=0",
	)
	m.RequireFamilies(t, metricstest.Documented(t, "../../../docs/bunny.md", "bunny_")...)
}
