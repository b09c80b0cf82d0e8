package tunnel

import "time"

// Warm reports whether the gateway whose status this is has completed a
// handshake with every peer since since, and every upstream of its rules
// is healthy: with high availability, whether a (re)started gateway has
// joined every pair.
func (s Status) Warm(since time.Time) bool {
	if len(s.Peers) == 0 {
		return false
	}
	for _, p := range s.Peers {
		if !p.LastHandshake.After(since) {
			return false
		}
	}
	for _, r := range s.Rules {
		for _, u := range r.Upstreams {
			if !u.Healthy {
				return false
			}
		}
	}
	return true
}
