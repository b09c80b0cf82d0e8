// Package bench measures the tunnel the way users run it, beside baselines
// measured in the same run: raw loopback and wireguard-go's stock
// tun/netstack. Machines are shared and noisy, so every figure is also
// given as a ratio to the stock baseline, and CI checks the ratio, never an
// absolute time.
//
// A measurement runs two gateways (ours or stock) as separate processes —
// the production shape: kernel socket → forward → WireGuard over UDP →
// expose → kernel socket — or, on request, inside this process. A UDP proxy
// between them can add delay, loss and reordering.
package bench
