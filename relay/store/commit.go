package store

import (
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// applyAfter bounds how long a journaled commit waits to be applied.
const applyAfter = 100 * time.Millisecond

// maxUnapplied bounds the journaled records waiting while the applier is
// busy (so memory stays bounded when writes outrun it): past it the
// committer waits for the applier before it commits more.
const maxUnapplied = 4 * applyJobs

// run is the committer: it takes every waiting write, appends them to the
// journal as one frame with one fsync, reports to each, and hands what
// the journal holds to the applier now and then.
func (s *Bolt) run() {
	defer close(s.stopped)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		for s.failed == nil && s.applying && (s.unappliedJobs >= maxUnapplied || s.unappliedBytes >= 4*applyBytes) {
			ch := s.appliedOne
			s.mu.Unlock()
			<-ch
			s.mu.Lock()
		}
		n, jobs := takeBatch(s.pending)
		batch := s.pending[:n:n]
		s.pending = s.pending[n:]
		if len(s.pending) == 0 {
			s.pending = nil
		}
		closed, failed := s.closed, s.failed
		s.mu.Unlock()

		if failed != nil {
			for _, w := range batch {
				w.c.finish(fmt.Errorf("%w: %w", ErrFailed, failed))
			}
			if len(batch) > 0 {
				continue
			}
		}
		if len(batch) == 0 {
			if closed {
				s.finish()
				return
			}
			s.handOff(false)
			s.mu.Lock()
			wait := time.Hour
			if len(s.unapplied) > 0 && !s.applying {
				wait = max(time.Millisecond, applyAfter-time.Since(s.unappliedSince))
			}
			s.mu.Unlock()
			timer.Reset(wait)
			select {
			case <-s.wake:
			case <-timer.C:
			}
			continue
		}
		start := time.Now()
		size, err := s.jr.commit(batch)
		s.commitSeconds.Observe(time.Since(start).Seconds())
		s.batchJobs.Observe(float64(jobs))
		if err != nil {
			s.fail(err)
			err = fmt.Errorf("%w: %w", ErrFailed, err)
		} else {
			s.mu.Lock()
			if len(s.unapplied) == 0 {
				s.unappliedSince = start
			}
			s.unapplied = append(s.unapplied, batch...)
			s.unappliedJobs += jobs
			s.unappliedBytes += size
			s.durable++
			s.mu.Unlock()
		}
		for _, w := range batch {
			w.c.finish(err)
		}
		if err == nil {
			s.handOff(false)
		}
	}
}

// handOff gives the journaled commits to the applier, if it is idle and
// they are due (or final: the store is closing). A hand-off ends the
// journal's segment, so the applied segments can be removed whole; the
// final one does not begin another.
func (s *Bolt) handOff(final bool) {
	s.mu.Lock()
	due := final || s.applyNow || s.unappliedJobs >= applyJobs || s.unappliedBytes >= applyBytes ||
		time.Since(s.unappliedSince) >= applyAfter
	if s.applying || s.failed != nil || len(s.unapplied) == 0 || !due {
		s.mu.Unlock()
		return
	}
	req := applyReq{batch: s.unapplied, seg: s.jr.seg, durable: s.durable}
	s.unapplied, s.unappliedJobs, s.unappliedBytes, s.applyNow = nil, 0, 0, false
	s.applying = true
	s.mu.Unlock()
	if !final {
		s.spareMu.Lock()
		next, err := s.jr.next()
		s.spareMu.Unlock()
		if err != nil {
			s.fail(err)
			s.mu.Lock()
			s.applying = false
			s.mu.Unlock()
			return
		}
		s.jr = next
	}
	s.applyCh <- req
}

// apply is the applier: it writes each hand-off into the file in one
// transaction, removes the journal segments the file now holds, and lets
// the overlay forget their records.
func (s *Bolt) apply() {
	defer close(s.applied)
	for req := range s.applyCh {
		start := time.Now()
		err := s.db.Update(func(tx *bolt.Tx) error { return applyBatch(tx, req.batch, req.seg) })
		s.applySeconds.Observe(time.Since(start).Seconds())
		if err != nil {
			s.fail(fmt.Errorf("applying the journal to the file: %w", err))
		} else {
			s.spareMu.Lock()
			err := removeSegments(s.path, req.seg, true)
			s.spareMu.Unlock()
			if err != nil {
				// Harmless: the next open removes what the file holds.
				s.log.Warn("removing applied journal segments", "err", err)
			}
		}
		s.mu.Lock()
		if err == nil {
			for i := range req.batch {
				s.over.done(&req.batch[i])
			}
			s.done = req.durable
		}
		s.applying = false
		close(s.appliedOne)
		s.appliedOne = make(chan struct{})
		s.mu.Unlock()
		if err == nil {
			s.maybeReleaseMap()
		}
		s.poke()
	}
}

// finish is the committer's last step at Close: it applies what the
// journal holds, stops the applier and closes the journal, which the
// file then holds whole.
func (s *Bolt) finish() {
	for {
		s.mu.Lock()
		busy, ch := s.applying, s.appliedOne
		s.mu.Unlock()
		if !busy {
			break
		}
		<-ch
	}
	s.handOff(true)
	close(s.applyCh)
	<-s.applied
	if err := s.jr.close(); err != nil {
		s.log.Warn("closing the journal", "err", err)
	}
	s.mu.Lock()
	whole := s.failed == nil && len(s.unapplied) == 0
	s.mu.Unlock()
	if whole {
		if err := removeSegments(s.path, s.jr.seg, false); err != nil {
			s.log.Warn("removing the applied journal", "err", err)
		}
	}
}

// settle waits until the file holds every commit acknowledged so far, for
// the reads of its indexes. On a failed store it reads what is there.
func (s *Bolt) settle(ctx context.Context) error {
	s.mu.Lock()
	target := s.durable
	for s.done < target && s.failed == nil && !s.closed {
		s.applyNow = true
		ch := s.appliedOne
		s.mu.Unlock()
		s.poke()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
		s.mu.Lock()
	}
	s.mu.Unlock()
	return nil
}

// poke wakes the committer, if it waits.
func (s *Bolt) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// fail marks the store failed: what is in memory may be ahead of the
// file, so every later write is refused.
func (s *Bolt) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

func (s *Bolt) failLocked(err error) {
	if s.failed != nil {
		return
	}
	s.log.Error("store commit failed; refusing all further writes (restart relay)", "err", err)
	s.failed = err
}

// Close implements Store: it commits what is waiting, applies it to the
// file, then closes the file.
func (s *Bolt) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		<-s.stopped
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.poke()
	<-s.stopped
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store: %w", err)
	}
	return nil
}

// recover replays into the file the journal segments it does not hold
// yet (a crash, or kill -9, before they were applied), removes the
// segments it holds, and starts the next segment.
func (s *Bolt) recover() (*journal, error) {
	var applied uint64
	if err := s.db.View(func(tx *bolt.Tx) (err error) {
		applied, err = appliedSegment(tx)
		return err
	}); err != nil {
		return nil, err
	}
	segs, err := segments(s.path)
	if err != nil {
		return nil, err
	}
	last, replayed := applied, 0
	for i, seg := range segs {
		if seg <= applied {
			continue
		}
		frames, err := readSegment(s.path, seg, i == len(segs)-1)
		if err != nil {
			return nil, err
		}
		var batch []writeReq
		for _, f := range frames {
			batch = append(batch, f...)
			replayed += len(f)
		}
		if err := s.db.Update(func(tx *bolt.Tx) error { return applyBatch(tx, batch, seg) }); err != nil {
			return nil, fmt.Errorf("replaying journal segment %s: %w", segmentPath(s.path, seg), err)
		}
		last = seg
	}
	if len(segs) > 0 {
		last = max(last, segs[len(segs)-1])
	}
	if err := removeSegments(s.path, last, true); err != nil {
		return nil, err
	}
	if replayed > 0 {
		s.log.Info("store replayed its journal", "records", replayed)
	}
	return createSegment(s.path, last+1)
}
