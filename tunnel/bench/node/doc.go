// Package node runs one benchmark gateway — ours or wireguard-go's stock
// tun/netstack — as its own process: a Spec on standard input, one line
// of Ready on standard output. It links no part of the harness, so the
// lean tunnel-gateway binary can carry it and the benchmark measures the
// memory of the binary a gateway pod runs.
package node
