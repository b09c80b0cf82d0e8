//go:build race

package tunnel_test

// raceEnabled: the race detector slows the netstack several times over,
// so sweeps in tests probe fewer ports.
const raceEnabled = true
