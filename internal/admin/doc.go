// Package admin serves the HTTP endpoints every tunnel process reports
// itself on: /metrics (Prometheus), /healthz, /readyz and any extra JSON
// handlers the process adds (the gateway's /status). It listens on its own
// address, never on a tunnel address, so nothing inside the tunnel can reach
// it.
package admin
