package tunnel

import "time"

// SetResolveTiming shortens endpoint re-resolution for tests.
func SetResolveTiming(g *Gateway, every, stale time.Duration) {
	g.resolveEvery, g.staleHandshake = every, stale
}

// SetPeerWatch shortens the peer watcher's poll and silence bound for
// tests. Call before Start.
func SetPeerWatch(g *Gateway, every, silentAfter time.Duration) {
	g.peerWatchEvery, g.silentAfter = every, silentAfter
}
