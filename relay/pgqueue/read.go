package pgqueue

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// Get returns a job as it is now.
func (q *Queue) Get(ctx context.Context, id string) (store.Job, error) {
	j, err := scanJob(q.pool.QueryRow(ctx, `SELECT `+cols+` FROM relay_jobs WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Job{}, fmt.Errorf("job %s: %w", id, queue.ErrNotFound)
	}
	if err != nil {
		return store.Job{}, q.dbErr(ctx, "reading job "+id, err)
	}
	return j, nil
}

// QueueOf is the queue job id belongs to.
func (q *Queue) QueueOf(ctx context.Context, id string) (string, error) {
	if name, ok := q.qof.get(id); ok {
		return name, nil
	}
	var name string
	err := q.pool.QueryRow(ctx, `SELECT queue FROM relay_jobs WHERE id = $1`, id).Scan(&name)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", fmt.Errorf("job %s: %w", id, queue.ErrNotFound)
	}
	if err != nil {
		return "", q.dbErr(ctx, "reading job "+id, err)
	}
	q.qof.put(id, name)
	return name, nil
}

// List pages through jobs in id (creation) order.
func (q *Queue) List(ctx context.Context, f store.Filter) ([]store.Job, string, error) {
	if f.State != "" && !f.State.Valid() {
		return nil, "", &queue.InvalidError{Field: "state", Problem: fmt.Sprintf("unknown state %q", f.State)}
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	f.Limit = min(f.Limit, 1000)
	rows, err := q.pool.Query(ctx, `SELECT `+cols+` FROM relay_jobs
		WHERE ($1 = '' OR queue = $1) AND ($2 = '' OR state = $2) AND id > $3
		ORDER BY id LIMIT $4`, f.Queue, string(f.State), f.After, f.Limit+1)
	if err != nil {
		return nil, "", q.dbErr(ctx, "listing jobs", err)
	}
	jobs, err := scanJobs(rows)
	if err != nil {
		return nil, "", q.dbErr(ctx, "listing jobs", err)
	}
	next := ""
	if len(jobs) > f.Limit {
		jobs = jobs[:f.Limit]
		next = jobs[len(jobs)-1].ID
	}
	return jobs, next, nil
}

// Cancel cancels a job: a queued or retrying one at once, a leased one is
// marked (its worker learns at its next heartbeat; the job ends cancelled
// when the lease fails or expires, unless a result comes first).
// Cancelling a cancelled job changes nothing; a finished one cannot be
// cancelled (queue.ErrConflict).
func (q *Queue) Cancel(ctx context.Context, id string) (store.Job, error) {
	what := "cancelling job " + id
	if err := q.check(what); err != nil {
		return store.Job{}, err
	}
	j, changed, err := q.change(ctx, what, `UPDATE relay_jobs SET
			state = CASE WHEN state = 'leased' THEN state ELSE 'cancelled' END,
			cancel_requested = (state = 'leased'),
			finished_at = CASE WHEN state = 'leased' THEN finished_at ELSE now() END,
			updated_at = now()
		WHERE id = $1 AND (state IN ('queued', 'retrying') OR (state = 'leased' AND NOT cancel_requested))
		RETURNING `+cols, id)
	if err != nil || changed {
		return j, err
	}
	if j.State == store.Cancelled || j.State == store.Leased {
		return j, nil
	}
	return store.Job{}, fmt.Errorf("%s: %w: it is already %s", what, queue.ErrConflict, j.State)
}

// Retry puts a dead, failed or cancelled job back in its queue, ready at
// once, with its attempts counted afresh. Its last error is kept.
func (q *Queue) Retry(ctx context.Context, id string) (store.Job, error) {
	what := "retrying job " + id
	if err := q.check(what); err != nil {
		return store.Job{}, err
	}
	if err := q.checkRoom(what, 1, 0); err != nil {
		return store.Job{}, err
	}
	j, changed, err := q.change(ctx, what, `UPDATE relay_jobs SET state = 'queued', attempt = 0, run_after = now(),
			cancel_requested = false, lease_token = NULL, leased_by = '', leased_at = NULL, lease_deadline = NULL,
			lease_end = '', result = NULL, finished_at = NULL, updated_at = now()
		WHERE id = $1 AND state IN ('dead', 'failed', 'cancelled')
		RETURNING `+cols, id)
	if err != nil {
		return store.Job{}, err
	}
	if changed {
		q.added(1, int64(len(j.Payload)))
		q.jobsReady(j.Queue)
		return j, nil
	}
	return store.Job{}, fmt.Errorf("%s: %w: it is %s; only dead, failed or cancelled jobs can be retried", what, queue.ErrConflict, j.State)
}

// change runs stmt, which changes job id if its state allows and returns
// its row. With no row it reads the job as it is (changed false), for
// the caller to say why its state did not allow the change.
func (q *Queue) change(ctx context.Context, what, stmt, id string) (j store.Job, changed bool, err error) {
	j, err = scanJob(q.pool.QueryRow(ctx, stmt, id))
	if err == nil {
		return j, true, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return store.Job{}, false, q.dbErr(ctx, what, err)
	}
	if j, err = q.Get(ctx, id); err != nil {
		return store.Job{}, false, fmt.Errorf("%s: %w", what, err)
	}
	return j, false, nil
}

// Counts is the number of jobs in each queue and state, as of the last
// refresh (every CountsInterval: a count over a large table is not free).
func (q *Queue) Counts() map[store.QueueState]int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return maps.Clone(q.counts)
}

func (q *Queue) refreshCounts(ctx context.Context) error {
	q.mu.Lock()
	seenJobs, seenBytes := q.live.addedJobs, q.live.addedBytes // the count below sees these
	q.mu.Unlock()
	rows, err := q.pool.Query(ctx, `SELECT queue, state, count(*),
			coalesce(sum(octet_length(payload)) FILTER (WHERE state IN `+liveStates+`), 0)::bigint
		FROM relay_jobs GROUP BY queue, state`)
	if err != nil {
		return q.dbErr(ctx, "counting jobs", err)
	}
	defer rows.Close()
	m := map[store.QueueState]int{}
	var lv live
	for rows.Next() {
		var name, st string
		var n int
		var b int64
		if err := rows.Scan(&name, &st, &n, &b); err != nil {
			return q.dbErr(ctx, "counting jobs", err)
		}
		m[store.QueueState{Queue: name, State: store.State(st)}] = n
		if store.State(st) == store.Queued || store.State(st) == store.Retrying || store.State(st) == store.Leased {
			lv.jobs += n
			lv.bytes += b
		}
	}
	if err := rows.Err(); err != nil {
		return q.dbErr(ctx, "counting jobs", err)
	}
	q.mu.Lock()
	q.counts = m
	lv.addedJobs = q.live.addedJobs - seenJobs
	lv.addedBytes = q.live.addedBytes - seenBytes
	q.live = lv
	q.mu.Unlock()
	return nil
}

func (q *Queue) countOnce() {
	ctx, cancel := context.WithTimeout(q.ctx, 30*time.Second)
	defer cancel()
	_ = q.refreshCounts(ctx)
}

// registerMetrics exports the job counts and the database's reachability.
func (q *Queue) registerMetrics(reg prometheus.Registerer) error {
	if reg == nil {
		return nil
	}
	depth := prometheus.NewDesc("relay_jobs", "Jobs by queue and state (queue depth), refreshed every few seconds.", []string{"queue", "state"}, nil)
	up := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "relay_database_up", Help: "1 while this replica reaches its PostgreSQL database."},
		func() float64 {
			if q.Ready() == nil {
				return 1
			}
			return 0
		})
	for _, c := range []prometheus.Collector{countsCollector{q: q, desc: depth}, up} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering queue metrics: %w", err)
		}
	}
	return nil
}

type countsCollector struct {
	q    *Queue
	desc *prometheus.Desc
}

func (c countsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c countsCollector) Collect(ch chan<- prometheus.Metric) {
	for k, n := range c.q.Counts() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), k.Queue, string(k.State))
	}
}

var _ queue.Backend = (*Queue)(nil)
