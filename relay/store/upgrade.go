package store

import (
	"errors"
	"fmt"
	"log/slog"

	bolt "go.etcd.io/bbolt"
)

// errUpgrade says the file is of schema version 1.
var errUpgrade = errors.New("schema version 1")

// upgradeBatch is how many records one upgrade transaction rewrites.
const upgradeBatch = 10_000

// upgradeV1 rewrites a file of schema version 1 (one JSON record per job,
// a states bucket) as version 2, then 3 (upgradeV2), in transactions of upgradeBatch records.
// A record already rewritten is skipped, so an upgrade cut short by a
// crash goes on where it stopped; the version changes last.
func upgradeV1(db *bolt.DB, log *slog.Logger) error {
	var after []byte
	total := 0
	for {
		n := 0
		err := db.Update(func(tx *bolt.Tx) error {
			for _, b := range allBuckets() {
				if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
					return err
				}
			}
			type rec struct{ id, v []byte }
			var recs []rec
			c := tx.Bucket([]byte(bucketJobs)).Cursor()
			k, v := c.First()
			if after != nil {
				k, v = c.Seek(after)
				if string(k) == string(after) {
					k, v = c.Next()
				}
			}
			for ; k != nil && len(recs) < upgradeBatch; k, v = c.Next() {
				recs = append(recs, rec{append([]byte(nil), k...), append([]byte(nil), v...)})
			}
			jobs, bodies, fin := tx.Bucket([]byte(bucketJobs)), tx.Bucket([]byte(bucketBodies)), tx.Bucket([]byte(bucketFinished))
			for _, r := range recs {
				after = r.id
				if len(r.v) == 0 || r.v[0] != '{' {
					continue // rewritten already
				}
				j, err := decodeV1(r.v)
				if err != nil {
					return fmt.Errorf("upgrading job %s: %w", r.id, err)
				}
				j.ID = string(r.id)
				if err := bodies.Put(r.id, encodeBody(&j)); err != nil {
					return err
				}
				if err := jobs.Put(r.id, encodeMeta(&j)); err != nil {
					return err
				}
				if fk := finishedKey(&j, j.ID); fk != nil {
					if err := fin.Put(fk, nil); err != nil {
						return err
					}
				}
				n++
			}
			if len(recs) < upgradeBatch {
				after = nil // done
				if tx.Bucket([]byte("states")) != nil {
					if err := tx.DeleteBucket([]byte("states")); err != nil {
						return err
					}
				}
				return upgradeV2(tx)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("upgrading the file from schema version 1: %w", err)
		}
		total += n
		if after == nil {
			log.Info("store upgraded to schema version "+schemaVersion, "jobs", total)
			return nil
		}
	}
}

// upgradeV2 makes a file of schema version 2 the current version, in tx: version 3
// has no index by state alone (by_s). Every record changed one state
// twice in it, for the one caller that listed by state across queues,
// which now merges the queues' runs of by_qs instead.
func upgradeV2(tx *bolt.Tx) error {
	if tx.Bucket([]byte("by_s")) != nil {
		if err := tx.DeleteBucket([]byte("by_s")); err != nil {
			return fmt.Errorf("dropping the index by state: %w", err)
		}
	}
	return tx.Bucket([]byte(bucketMeta)).Put([]byte("schema"), []byte(schemaVersion))
}
