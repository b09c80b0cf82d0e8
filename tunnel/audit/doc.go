// Package audit probes what a peer answers from inside the tunnel: every
// TCP port of its tunnel address, the UDP ports that matter, and other
// addresses of its allowed range. The gateway runs it through its own
// netstack (tunnel's POST /audit admin handler), so the probe comes from
// the gateway's tunnel address with the gateway's own session, exactly as
// the peer's policy sees this gateway's traffic; `tunnel audit` asks for
// it and fails when anything answers beyond what the configuration
// forwards to.
package audit
