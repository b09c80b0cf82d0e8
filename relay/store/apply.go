package store

import (
	"fmt"
	"strconv"

	bolt "go.etcd.io/bbolt"
)

// Applying is how journaled commits reach the bbolt file: many of them in
// one transaction, so that the file's pages are written (and its two
// fsyncs paid) once for thousands of records rather than at every commit.
// Until a commit is applied, the overlay keeps its records visible to
// Get, Bodies and LookupKey; reads of the indexes (List, Live, Counts,
// Finished) first have everything acknowledged applied (settle).

// When the committer hands the journaled commits to the applier: any of
// these reached, or a read waiting.
const (
	applyJobs  = 4096
	applyBytes = 16 << 20
)

// metaJournal is the key, in the meta bucket, of the last journal segment
// the file holds.
const metaJournal = "journal"

// applyReq is what the committer hands the applier: the commits of
// journal segments up to seg, which were frames up to durable.
type applyReq struct {
	batch   []writeReq
	seg     uint64
	durable uint64
}

// applyBatch writes batch into tx and records that the file holds the
// journal through seg. A job's several records in the batch become one
// write of their merged record; where the batch deletes anything it is
// written record by record, in order, since a delete frees an
// idempotency key a later write may take.
func applyBatch(tx *bolt.Tx, batch []writeReq, seg uint64) error {
	w := newWriteTx(tx)
	if err := w.applyFolded(batch); err != nil {
		return err
	}
	if err := w.flush(); err != nil {
		return err
	}
	return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaJournal), []byte(strconv.FormatUint(seg, 10)))
}

func (w *writeTx) applyFolded(batch []writeReq) error {
	deletes, records := false, 0
	for i := range batch {
		deletes = deletes || len(batch[i].del) > 0
		records += len(batch[i].jobs)
	}
	if deletes {
		return w.applyInOrder(batch)
	}
	// Sized for every record once: grown by doubling, the copies of a
	// 4,096-record batch were the applier's largest allocation.
	folded := make(map[string]int, records) // id → index in jobs
	jobs := make([]Job, 0, records)
	for i := range batch {
		for _, j := range batch[i].jobs {
			if k, ok := folded[j.ID]; ok {
				jobs[k] = merge(jobs[k], j)
				continue
			}
			folded[j.ID] = len(jobs)
			jobs = append(jobs, j)
		}
	}
	for i := range jobs {
		if err := w.put(&jobs[i]); err != nil {
			return fmt.Errorf("writing job %s: %w", jobs[i].ID, err)
		}
	}
	return nil
}

func (w *writeTx) applyInOrder(batch []writeReq) error {
	for _, r := range batch {
		for i := range r.jobs {
			if err := w.put(&r.jobs[i]); err != nil {
				return fmt.Errorf("writing job %s: %w", r.jobs[i].ID, err)
			}
		}
		for _, id := range r.del {
			if err := w.remove(id); err != nil {
				return fmt.Errorf("deleting job %s: %w", id, err)
			}
		}
	}
	return nil
}

// appliedSegment is the last journal segment the file holds.
func appliedSegment(tx *bolt.Tx) (uint64, error) {
	v := tx.Bucket([]byte(bucketMeta)).Get([]byte(metaJournal))
	if v == nil {
		return 0, nil
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("reading the applied journal segment %q: %w", v, err)
	}
	return n, nil
}
