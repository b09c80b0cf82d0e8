package store

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// SetPaused implements Store. It commits on its own, apart from the
// group-committed job records: a pause is rare and orders with nothing.
func (s *Bolt) SetPaused(ctx context.Context, queue string, paused bool) error {
	if err := s.Err(); err != nil {
		return fmt.Errorf("recording the pause of queue %s: %w", queue, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bucketPaused))
		if paused {
			return b.Put([]byte(queue), nil)
		}
		return b.Delete([]byte(queue))
	})
	if err != nil {
		return fmt.Errorf("recording the pause of queue %s: %w", queue, err)
	}
	return nil
}

// Paused implements Store.
func (s *Bolt) Paused(ctx context.Context) ([]string, error) {
	var out []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bucketPaused)).ForEach(func(k, _ []byte) error {
			out = append(out, string(k))
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("reading paused queues: %w", err)
	}
	return out, nil
}
