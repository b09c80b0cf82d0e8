package pgqueue

import (
	"context"
	"maps"
	"sync"
	"time"

	"github.com/tunnel-dev/tunnel/relay/queue"
	"github.com/tunnel-dev/tunnel/relay/store"
)

// rateSkew is how far a replica's clock, which stamps job ids, may run
// behind the database's, which stamps created_at, before Rates misses
// that replica's new jobs.
const rateSkew = time.Minute

// rateCache holds the last Rates answer for CountsInterval.
type rateCache struct {
	mu    sync.Mutex // held over a query, so callers at once share one
	at    time.Time
	rates map[string]queue.Rate
}

// Rates is what each queue's jobs did over the last queue.RateWindow on
// every replica, by the database's clock, as of at most CountsInterval
// ago. New jobs are found by a range over the primary key (ids sort by
// creation: under a millisecond on a million jobs); finished ones by
// finished_at, which no index holds, so that half reads every retained
// job (about 0.5 s for a million, as the counts refresh does). Hence the
// cache: at most one such read per CountsInterval per replica.
func (q *Queue) Rates(ctx context.Context) (map[string]queue.Rate, error) {
	const what = "reading queue rates"
	if err := q.check(what); err != nil {
		return nil, err
	}
	c := &q.rateCache
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rates != nil && time.Since(c.at) < q.opts.CountsInterval {
		return maps.Clone(c.rates), nil
	}
	rates, err := q.readRates(ctx, what)
	if err != nil {
		return nil, err
	}
	c.at, c.rates = time.Now(), rates
	return maps.Clone(rates), nil
}

func (q *Queue) readRates(ctx context.Context, what string) (map[string]queue.Rate, error) {
	window := queue.RateWindow.Milliseconds()
	rows, err := q.pool.Query(ctx, `
		SELECT queue, '', count(*) FROM relay_jobs
			WHERE id >= $1 AND created_at >= now() - $2::bigint * interval '1 millisecond'
			GROUP BY queue
		UNION ALL
		SELECT queue, state, count(*) FROM relay_jobs
			WHERE state IN ('succeeded', 'failed', 'dead') AND finished_at >= now() - $2::bigint * interval '1 millisecond'
			GROUP BY queue, state`,
		queue.IDFloor(time.Now().Add(-queue.RateWindow-rateSkew)), window)
	if err != nil {
		return nil, q.dbErr(ctx, what, err)
	}
	defer rows.Close()
	out := map[string]queue.Rate{}
	for rows.Next() {
		var name, st string
		var n int
		if err := rows.Scan(&name, &st, &n); err != nil {
			return nil, q.dbErr(ctx, what, err)
		}
		r := out[name]
		switch store.State(st) {
		case "":
			r.Enqueued += n
		case store.Succeeded:
			r.Completed += n
		default:
			r.Failed += n
		}
		out[name] = r
	}
	if err := rows.Err(); err != nil {
		return nil, q.dbErr(ctx, what, err)
	}
	return out, nil
}
