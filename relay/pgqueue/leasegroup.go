package pgqueue

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/relay/store"
)

// Concurrent lease calls for the same queues are combined: while
// groupStatements lease statements for them run, later calls wait, and
// the next statement
// leases for all of them at once (up to groupRequests calls, each worker
// once per statement so its lease limit holds), oldest jobs to the
// earliest call. Under load this turns many statements skipping each
// other's locked rows into a few.
const (
	groupRequests   = 64
	groupStatements = 2
)

// groupLeaseSQL leases for several calls in one statement: $2 and $3 are
// each call's worker and wanted count; each gets no more than leaves it
// holding $4. The wanted slots are numbered in call order, the picked
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

// leaseCall is one call waiting in a group.
type leaseCall struct {
	worker string
	n      int
	// done gets the call's outcome, or nil jobs and lead set: the call is
	// to run the next statement for the group, for batch.
	done chan leaseOutcome
}

type leaseOutcome struct {
	jobs  []store.Job
	err   error
	lead  bool
	batch []*leaseCall
}

// leaseGroups holds, per queue set, how many statements run and the
// calls waiting for the next one.
type leaseGroups struct {
	mu      sync.Mutex
	running map[string]*leaseGroup // by queue set
}

type leaseGroup struct {
	active  int
	waiting []*leaseCall
}

// leaseGrouped leases up to n jobs of queues for worker, in a statement
// it shares with concurrent calls for the same queues.
func (q *Queue) leaseGrouped(ctx context.Context, worker string, queues []string, n int) ([]store.Job, error) {
	key := strings.Join(queues, "\x00")
	me := &leaseCall{worker: worker, n: n, done: make(chan leaseOutcome, 1)}
	g := &q.groups
	g.mu.Lock()
	grp := g.running[key]
	if grp == nil {
		grp = &leaseGroup{}
		g.running[key] = grp
	}
	if grp.active < groupStatements {
		grp.active++
		g.mu.Unlock()
		return q.leadGroup(ctx, key, queues, me, []*leaseCall{me})
	}
	grp.waiting = append(grp.waiting, me)
	g.mu.Unlock()
	// Wait whatever ctx does: once queued the call may be in a statement
	// (its caller unleases what it no longer wants).
	out := <-me.done
	if out.lead {
		return q.leadGroup(ctx, key, queues, me, out.batch)
	}
	return out.jobs, out.err
}

// leadGroup runs the statement for batch (which holds me), hands the
// group to the first call still waiting, and returns me's jobs.
func (q *Queue) leadGroup(ctx context.Context, key string, queues []string, me *leaseCall, batch []*leaseCall) ([]store.Job, error) {
	byWorker, err := q.leaseStatement(queues, batch)

	g := &q.groups
	g.mu.Lock()
	grp := g.running[key]
	if len(grp.waiting) == 0 {
		if grp.active--; grp.active == 0 {
			delete(g.running, key)
		}
	} else {
		next, rest := takeBatch(grp.waiting)
		grp.waiting = rest
		next[0].done <- leaseOutcome{lead: true, batch: next}
	}
	g.mu.Unlock()

	var mine []store.Job
	for _, c := range batch {
		if c == me {
			mine = byWorker[c.worker]
			continue
		}
		c.done <- leaseOutcome{jobs: byWorker[c.worker], err: err}
	}
	return mine, err
}

// takeBatch splits off the next statement's calls: in order, each worker
// once, at most groupRequests.
func takeBatch(waiting []*leaseCall) (batch, rest []*leaseCall) {
	seen := map[string]bool{}
	for _, c := range waiting {
		if len(batch) < groupRequests && !seen[c.worker] {
			seen[c.worker] = true
			batch = append(batch, c)
			continue
		}
		rest = append(rest, c)
	}
	return batch, rest
}

// leaseStatement runs one lease statement for batch, whose workers are
// distinct, and returns each worker's jobs.
func (q *Queue) leaseStatement(queues []string, batch []*leaseCall) (map[string][]store.Job, error) {
	workers := make([]string, len(batch))
	ns := make([]int32, len(batch))
	for i, c := range batch {
		workers[i], ns[i] = c.worker, int32(c.n)
	}
	ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
	defer cancel()
	rows, err := q.pool.Query(ctx, groupLeaseSQL, queues, workers, ns, q.opts.Queue.MaxLeasesPerWorker)
	if err != nil {
		return nil, q.dbErr(ctx, "leasing", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, q.dbErr(ctx, "leasing", err)
	}
	out := map[string][]store.Job{}
	for _, j := range jobs {
		out[j.LeasedBy] = append(out[j.LeasedBy], j)
	}
	return out, nil
}
