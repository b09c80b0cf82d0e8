// Package gatewaycmd is the command that runs a gateway: its flags, the
// Go memory limit from the cgroup, config loading and reloading, and the
// drain on SIGTERM. `tunnel gateway` and the lean tunnel-gateway binary a
// gateway pod runs share it, so both behave alike to the flag.
package gatewaycmd
