package tunnel

import "time"

// SetResolveTiming shortens endpoint re-resolution for tests.
func SetResolveTiming(g *Gateway, every, stale time.Duration) {
	g.resolveEvery, g.staleHandshake = every, stale
}
