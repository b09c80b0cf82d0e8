// Package pgqueue is relay's job queue on PostgreSQL: the same state
// machine as relay/queue, with the database as the only state, so several
// relay replicas can serve one queue at once with no leader.
//
//   - Every state change is one conditional SQL statement fenced by the
//     full lease identity (job id, attempt, token, worker): PostgreSQL
//     re-checks the newest row version under the row lock, so at most one
//     of complete, fail, expiry, release or unlease wins per attempt.
//     Deadlines come from the database's now(): one clock for every
//     replica.
//   - Lease picks many rows at once with a materialized CTE and FOR UPDATE
//     SKIP LOCKED; heartbeats extend every listed lease in one statement
//     over unnest; completions from concurrent calls are grouped into one
//     statement (group commit).
//   - Idempotency keys are a unique partial index on (queue, key).
//   - A replica wakes its own long polls after its own commits, and tells
//     the others with pg_notify after commit, debounced per queue, on one
//     LISTEN connection; parked polls also poll, and wake at the next
//     run_after.
//   - Expiry runs on every replica with SKIP LOCKED. After the replica
//     (re)gains its database connection, it expires a lease only once it
//     has been connected for that job's lease duration: workers that could
//     not heartbeat through an outage get a lease duration to do so.
//   - The schema is versioned (relay_schema_migrations); Migrate applies
//     what is missing inside one transaction holding a transaction-scoped
//     advisory lock, so two replicas starting together do not race, and a
//     schema newer than the binary is refused.
package pgqueue
