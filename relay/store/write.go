package store

import (
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// writeTx is one group commit's transaction: the buckets every record
// touches, looked up once, and the changes to the counts by queue and
// state, added up in memory and written once at flush. A state change
// moves two counts, so writing them per record would rewrite the same
// few keys twice for every record of the commit.
type writeTx struct {
	tx                           *bolt.Tx
	jobs, bodies, fin, byQS, byQ *bolt.Bucket
	keys, counts                 *bolt.Bucket
	deltas                       map[string]int64 // key(queue, state) → change
}

func newWriteTx(tx *bolt.Tx) *writeTx {
	w := &writeTx{
		tx:     tx,
		jobs:   tx.Bucket([]byte(bucketJobs)),
		bodies: tx.Bucket([]byte(bucketBodies)),
		fin:    tx.Bucket([]byte(bucketFinished)),
		byQS:   tx.Bucket([]byte(bucketByQS)),
		byQ:    tx.Bucket([]byte(bucketByQ)),
		keys:   tx.Bucket([]byte(bucketKeys)),
		counts: tx.Bucket([]byte(bucketCounts)),
		deltas: map[string]int64{},
	}
	// ids grow: pages fill from the right.
	w.jobs.FillPercent, w.bodies.FillPercent = 0.9, 0.9
	return w
}

// put writes one record and keeps the indexes and counts in step. The
// first record of a job writes its body too; later ones only its meta
// (see merge).
func (w *writeTx) put(j *Job) error {
	if err := validRecord(j); err != nil {
		return err
	}
	id := []byte(j.ID)
	var old Job
	if rec := w.jobs.Get(id); rec != nil {
		if err := decodeMeta(&old, rec, true); err != nil {
			return fmt.Errorf("decoding the record before: %w", err)
		}
		if old.Queue != j.Queue {
			return fmt.Errorf("record moves the job from queue %s to %s", old.Queue, j.Queue)
		}
		rec := *j
		rec.PayloadSize = old.PayloadSize
		if rec.LastError == "" {
			rec.LastError = old.LastError
		}
		j = &rec
	} else {
		if err := w.bodies.Put(id, encodeBody(j)); err != nil {
			return err
		}
		rec := *j
		rec.PayloadSize = len(j.Payload)
		j = &rec
	}
	if err := w.jobs.Put(id, encodeMeta(j)); err != nil {
		return err
	}
	if fk, nk := finishedKey(&old, j.ID), finishedKey(j, j.ID); string(fk) != string(nk) {
		if fk != nil {
			if err := w.fin.Delete(fk); err != nil {
				return err
			}
		}
		if nk != nil {
			if err := w.fin.Put(nk, nil); err != nil {
				return err
			}
		}
	}
	if old.State == j.State {
		return nil
	}
	if old.State != "" {
		if err := w.byQS.Delete(key(j.Queue, string(old.State), j.ID)); err != nil {
			return err
		}
		w.count(j.Queue, old.State, -1)
	} else {
		if err := w.byQ.Put(key(j.Queue, j.ID), nil); err != nil {
			return err
		}
		if j.IdempotencyKey != "" {
			k := key(j.Queue, j.IdempotencyKey)
			if w.keys.Get(k) == nil {
				if err := w.keys.Put(k, id); err != nil {
					return err
				}
			}
		}
	}
	if err := w.byQS.Put(key(j.Queue, string(j.State), j.ID), nil); err != nil {
		return err
	}
	w.count(j.Queue, j.State, 1)
	return nil
}

// remove deletes one record with its index entries and count; a missing
// one is no error.
func (w *writeTx) remove(id string) error {
	j, err := read(w.tx, []byte(id))
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, d := range []struct {
		b   *bolt.Bucket
		key []byte
	}{
		{w.jobs, []byte(id)},
		{w.bodies, []byte(id)},
		{w.byQS, key(j.Queue, string(j.State), id)},
		{w.byQ, key(j.Queue, id)},
		{w.fin, finishedKey(&j, id)},
	} {
		if d.key == nil {
			continue
		}
		if err := d.b.Delete(d.key); err != nil {
			return err
		}
	}
	if j.IdempotencyKey != "" {
		k := key(j.Queue, j.IdempotencyKey)
		if string(w.keys.Get(k)) == id {
			if err := w.keys.Delete(k); err != nil {
				return err
			}
		}
	}
	w.count(j.Queue, j.State, -1)
	return nil
}

// count notes a change of one count, written at flush.
func (w *writeTx) count(queue string, st State, delta int64) {
	w.deltas[string(key(queue, string(st)))] += delta
}

// flush writes the counts the records changed.
func (w *writeTx) flush() error {
	for k, d := range w.deltas {
		if d == 0 {
			continue
		}
		if err := addCount(w.counts, []byte(k), d); err != nil {
			return err
		}
	}
	return nil
}

// addCount adds delta to the count at k; a count that reaches zero is
// removed.
func addCount(b *bolt.Bucket, k []byte, delta int64) error {
	var n int64
	if v := b.Get(k); len(v) == 8 {
		n = int64(binary.BigEndian.Uint64(v))
	}
	n += delta
	if n <= 0 {
		return b.Delete(k)
	}
	return b.Put(k, binary.BigEndian.AppendUint64(nil, uint64(n)))
}
