package pgqueue

import (
	"context"
	"fmt"
	"time"

	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// opTimeout bounds calls that take no context.
const opTimeout = 10 * time.Second

// Heartbeat extends worker's leases in refs by each job's lease duration,
// in one statement, and reports each one's state in order: a lease missing
// from the statement's answer is lost. The deadline only grows, and no
// indexed column changes, so each is a HOT update.
//
// With allHeld, refs is every lease the worker holds: its other leases
// older than the release grace are released (a failed attempt, ready again
// at once).
func (q *Queue) Heartbeat(worker string, refs []queue.Ref, allHeld bool) ([]queue.LeaseStatus, error) {
	if err := q.check("heartbeat"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(q.ctx, opTimeout)
	defer cancel()
	ids, attempts, tokens := unzip(refs)
	out := make([]queue.LeaseStatus, len(refs))
	for i, r := range refs {
		out[i] = queue.LeaseStatus{JobID: r.JobID, State: proto.LeaseLost}
	}
	if len(refs) > 0 {
		rows, err := q.pool.Query(ctx, `UPDATE relay_jobs j
			SET lease_deadline = greatest(j.lease_deadline, now() + j.lease_ms * interval '1 millisecond')
			FROM unnest($1::text[], $2::integer[], $3::bytea[]) AS u(id, attempt, token)
			WHERE j.id = u.id AND j.attempt = u.attempt AND j.lease_token = u.token AND j.leased_by = $4 AND j.state = 'leased'
			RETURNING j.id, j.lease_deadline, j.cancel_requested`, ids, attempts, tokens, worker)
		if err != nil {
			return nil, q.dbErr(ctx, "heartbeat", err)
		}
		type held struct {
			deadline time.Time
			cancel   bool
		}
		got := map[string]held{}
		for rows.Next() {
			var id string
			var h held
			if err := rows.Scan(&id, &h.deadline, &h.cancel); err != nil {
				rows.Close()
				return nil, q.dbErr(ctx, "heartbeat", err)
			}
			got[id] = h
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, q.dbErr(ctx, "heartbeat", err)
		}
		for i := range out {
			h, ok := got[out[i].JobID]
			if !ok {
				continue
			}
			out[i].Deadline = h.deadline
			out[i].State = proto.LeaseHeld
			if h.cancel {
				out[i].State = proto.LeaseCancelRequested
			}
		}
	}
	if allHeld {
		if err := q.release(ctx, worker, ids); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// release ends worker's leases not in listed that are older than the
// release grace: a younger one may be in a Lease answer still on its way.
func (q *Queue) release(ctx context.Context, worker string, listed []string) error {
	grace := q.opts.Queue.ReleaseGrace.Milliseconds()
	rows, err := q.pool.Query(ctx, `SELECT `+cols+` FROM relay_jobs
		WHERE state = 'leased' AND leased_by = $1 AND id <> ALL($2::text[]) AND leased_at < now() - $3::bigint * interval '1 millisecond'`,
		worker, listed, grace)
	if err != nil {
		return q.dbErr(ctx, "heartbeat", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil || len(jobs) == 0 {
		if err != nil {
			return q.dbErr(ctx, "heartbeat", err)
		}
		return nil
	}
	es := make([]ending, len(jobs))
	for i, j := range jobs {
		es[i] = ending{job: j, end: store.EndReleased, out: queue.AfterFailure(&j, false, 0, q.opts.Queue.Backoff),
			msg: fmt.Sprintf("released: worker %s no longer holds the lease of attempt %d", worker, j.Attempt)}
	}
	ended, err := q.endLeases(ctx, es, endRelease, grace)
	if err != nil {
		return q.dbErr(ctx, "heartbeat", err)
	}
	if len(ended) > 0 {
		q.log.Info("leases released: the worker's heartbeat does not list them", "worker", worker, "jobs", len(ended))
	}
	return nil
}
