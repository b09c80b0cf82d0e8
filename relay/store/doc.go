// Package store keeps relay's jobs durably.
//
// Store is the interface the rest of relay uses, so that another backend
// can follow without touching the protocol or the queue logic. relay's
// queue (package relay/queue) is the only writer: it decides every change
// in memory and hands the store whole job records to write. The store
// writes them in the order they were handed over, all the records of one
// Write atomically, and says when they are durable; the queue acknowledges
// nothing before that.
//
// Bolt, the embedded implementation, is one bbolt file. A single committer
// goroutine takes every record waiting, writes them in one transaction and
// fsyncs once (group commit), so many concurrent callers share one fsync
// and durability does not cap throughput. Indexes by queue, by state and
// by both, the idempotency keys and the counts by queue and state are kept
// in the same transactions, so they are never out of step with the jobs.
package store
