// Package monitoring holds no code: the directory is the Grafana dashboard
// (dashboard.json) and the Prometheus alert rules (alerts.yaml) for the
// tunnel gateways, relay and bunny. Its test runs the three binaries on
// loopback, passes a job through them, and checks that every metric,
// label and label value the dashboard and the rules query is one the
// binaries' /metrics serve, so that a renamed metric cannot leave a panel
// blank or an alert silent.
package monitoring
