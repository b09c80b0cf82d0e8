package pgqueue

import (
	"fmt"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Concurrent lease calls for the same queues are combined: one statement
// leases for all of them at once (up to groupRequests calls; the calls of
// one worker are one request for their total, so its lease limit holds),
// oldest jobs to the earliest call. Under load this turns many statements skipping each
// other's locked rows into a few.

// lockWorkersSQL takes a transaction-scoped lock per worker leasing in a
// round, before its lease statements: groupLeaseSQL counts what each
// worker holds to keep it under its lease limit, and two rounds in flight
// at once (on one replica or several) would each count before the other
// commits and together lease past the limit. Held to the round's commit;
// taken in name order, so two rounds never wait on each other in a
// circle; the lease statements only skip locked rows, never wait on them.
// Transaction-scoped, so it works through poolers (no session state).
const lockWorkersSQL = `SELECT count(*) FROM (
		SELECT pg_advisory_xact_lock(hashtextextended('relay/1 lease limit ' || w, 0))
		FROM (SELECT DISTINCT w FROM unnest($1::text[]) AS u(w) ORDER BY w) ws) locked`

// groupLeaseSQL leases for several calls in one statement: $2 and $3 are
// each worker (once) and the count its calls want; each gets no more than
// leaves it holding $4. The wanted slots are numbered in call order, the picked
// jobs oldest first, and slot k's worker takes job k.
const groupLeaseSQL = `WITH req AS (
		SELECT r.worker, r.ord, greatest(0, least(r.n, $4::integer - (
			SELECT count(*)::integer FROM relay_jobs WHERE state = 'leased' AND leased_by = r.worker))) AS n
		FROM unnest($2::text[], $3::integer[]) WITH ORDINALITY AS r(worker, n, ord)),
	slots AS MATERIALIZED (
		SELECT req.worker, row_number() OVER (ORDER BY req.ord, s.i) AS k
		FROM req, generate_series(1, req.n) AS s(i)),
	picked AS MATERIALIZED (
		SELECT p.id, row_number() OVER (ORDER BY p.run_after, p.id) AS k FROM (
			SELECT c.id, c.run_after FROM unnest($1::text[]) AS qn(name), LATERAL (
				SELECT id, run_after FROM relay_jobs
				WHERE state IN ('queued', 'retrying') AND queue = qn.name AND run_after <= now()
					AND NOT EXISTS (SELECT 1 FROM relay_paused_queues WHERE queue = qn.name)
				ORDER BY run_after, id
				LIMIT (SELECT count(*) FROM slots)
				FOR UPDATE SKIP LOCKED) c
			ORDER BY c.run_after, c.id
			LIMIT (SELECT count(*) FROM slots)) p)
	UPDATE relay_jobs j SET state = 'leased', attempt = j.attempt + 1, lease_token = uuid_send(gen_random_uuid()),
		leased_by = slots.worker, leased_at = now(), lease_deadline = now() + j.lease_ms * interval '1 millisecond',
		lease_end = '', updated_at = now()
	FROM picked JOIN slots USING (k) WHERE j.id = picked.id
	RETURNING ` + jcols

// leaseGrouped leases up to n jobs of queues for worker, in a statement
// it shares with concurrent calls for the same queues (see flush.go).
func (q *Queue) leaseGrouped(worker string, queues []string, n int) ([]store.Job, error) {
	me := &leaseCall{worker: worker, n: n, done: make(chan leaseOutcome, 1)}
	if err := q.pend.addLease(queues, me); err != nil {
		return nil, fmt.Errorf("leasing: %w", err)
	}
	// Wait whatever the caller's ctx does: once queued the call may be in
	// a statement (its caller unleases what it no longer wants).
	out := <-me.done
	return out.jobs, out.err
}
