//go:build !linux

package store

import bolt "go.etcd.io/bbolt"

// releaseMap is a no-op where relay does not manage the map's pages.
func (s *Bolt) releaseMap() {}

func (s *Bolt) maybeReleaseMap() {}

func (s *Bolt) dropPages(*bolt.Tx) {}

const releaseRecords = 1 << 16
