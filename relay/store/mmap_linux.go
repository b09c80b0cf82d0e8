package store

import (
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// releaseEvery bounds how often the committer lets go of the file's
// pages; Live lets go every releaseRecords records it reads.
const (
	releaseEvery   = 2 * time.Second
	releaseRecords = 1 << 16
)

// releaseMap drops the pages of the file's memory map from relay's
// resident memory (they stay in the page cache, and the next read maps
// them back): reads fault in pages of records relay does not keep, and a
// backlog of a million jobs should not be counted against relay's memory
// for every page it once read. A read transaction holds the map in place
// meanwhile.
func (s *Bolt) releaseMap() {
	_ = s.db.View(func(tx *bolt.Tx) error {
		s.dropPages(tx)
		return nil
	})
}

// dropPages is releaseMap inside a transaction, which holds the map.
func (s *Bolt) dropPages(tx *bolt.Tx) {
	data, size := s.db.Info().Data, uintptr(tx.Size())
	if data == 0 || size == 0 {
		return
	}
	if _, _, errno := unix.Syscall(unix.SYS_MADVISE, data, size, unix.MADV_DONTNEED); errno != 0 {
		s.log.Debug("releasing the store's mapped pages", "err", errno)
	}
}

// maybeReleaseMap is releaseMap at most every releaseEvery; only the
// committer calls it.
func (s *Bolt) maybeReleaseMap() {
	if now := time.Now(); now.Sub(s.lastMap) >= releaseEvery {
		s.lastMap = now
		s.releaseMap()
	}
}
