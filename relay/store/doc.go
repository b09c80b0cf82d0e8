// Package store keeps relay's jobs durably.
//
// Store is the interface the rest of relay uses, so that another backend
// can follow without touching the protocol or the queue logic. relay's
// queue (package relay/queue) is the only writer: it decides every change
// and hands the store job records to write. The store writes them in the
// order they were handed over, all the records of one Write atomically,
// and says when they are durable; the queue acknowledges nothing before
// that. Until then Get and LookupKey already see them (an overlay of the
// pending writes), so the queue keeps no copy of a record.
//
// Bolt, the embedded implementation, is one bbolt file and a journal
// beside it. A single committer goroutine takes every record waiting,
// appends them to the journal as one frame and fsyncs once (group commit),
// so many concurrent callers share one fsync and durability does not cap
// throughput; an applier goroutine writes the journaled records into the
// file many commits at a time, and at open the journal's segments the file
// does not hold yet are replayed (journal.go, apply.go, commit.go). A job is two binary records: a
// body (payload, idempotency key, creation time) written once, and a meta
// record (state, attempts, lease, outcome) rewritten at each change.
// Indexes by queue and by queue and state, the idempotency keys, a
// finished-at index for retention and the counts by queue and state are
// kept in the same transactions, so they are never out of step with the
// jobs; a commit adds up its changes to the counts and writes each once.
// Listing by state alone merges the queues' runs of that state. Pages of the file's memory map that reads brought in are released
// from relay's RSS every few seconds (they stay in the page cache).
package store
