// Package queue is relay's job state machine: enqueue, long-poll leasing,
// heartbeats, fenced completion and failure, retries with backoff, lease
// expiry, cancellation and manual retry.
//
// The queue keeps an index of the live jobs (queued, leased, retrying) in
// memory: per job a fixed-size entry without pointers (id, queue, state,
// attempt, run-after, the lease's worker, token and deadline, payload
// size) in blocks mapped outside the Go heap, found by id through an
// open-addressing table, about 130 bytes a job. Payloads, results, last
// errors, idempotency keys and finished jobs are only in the store, which
// answers for a record from the moment it is handed over. The queue
// decides every change under one lock, hands each changed record to the
// store in the same order, and answers the caller only once the store
// says the change is durable. A job's life and its fencing:
//
//   - Leasing a job raises its attempt and gives it a fresh random token
//     and a deadline. A call about the lease names (job, attempt, token);
//     anything else is LEASE_LOST, so a late answer from an expired lease
//     cannot overwrite a newer attempt.
//   - Complete is idempotent: repeating it with the same lease returns the
//     same answer, and the first result is kept. A lease that expired may
//     still complete its job if no newer attempt has started (first valid
//     result wins); once one has, it is fenced off.
//   - An expired lease counts as a failed attempt, as does a lease the
//     worker says it no longer holds. Failed attempts back off
//     exponentially with jitter; at the last attempt the job is dead, and
//     stays visible until retried.
//   - Long polls wait in a FIFO; each job that becomes ready goes to the
//     first waiter that wants its queue, so one job wakes one waiter.
//   - On start, leases found in the store get their deadline pushed to at
//     least a lease duration from now (the restart grace), so workers that
//     were mid-job can heartbeat again instead of every job being
//     redelivered at once.
//   - With Options.Retain, succeeded, dead and cancelled jobs older than it
//     are deleted in batches, with their idempotency keys.
package queue
