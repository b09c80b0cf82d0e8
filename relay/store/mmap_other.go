//go:build !linux

package store

// releaseMap is a no-op where relay does not manage the map's pages.
func (s *Bolt) releaseMap() {}

func (s *Bolt) maybeReleaseMap() {}
