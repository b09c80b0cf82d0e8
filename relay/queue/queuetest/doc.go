// Package queuetest is the conformance suite of relay's queue backends:
// the semantic tests (lease, fencing, expiry, redelivery, idempotent
// complete, cancel, retry, dead, backoff, idempotency keys, restart grace,
// payload and result caps) that every queue.Backend passes unchanged.
package queuetest
