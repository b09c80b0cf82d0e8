package pgqueue

import (
	"fmt"

	"github.com/tunnel-dev/tunnel/relay/queue"
)

// live is what the live-job limits are checked against: the unfinished
// jobs and their payload bytes as of the last count (every
// CountsInterval), plus what this replica has added since. Other
// replicas' enqueues since the last count are not seen, so across
// replicas the limits are approximate: they may be passed by up to what
// the others add in one CountsInterval.
type live struct {
	jobs       int
	bytes      int64
	addedJobs  int
	addedBytes int64
}

// liveStates are the states counted against the limits.
const liveStates = `('queued', 'retrying', 'leased')`

// checkRoom refuses n more jobs of size bytes with queue.ErrFull when
// they would pass MaxLiveJobs or MaxLiveBytes.
func (q *Queue) checkRoom(what string, n int, bytes int64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	jobs, b := q.live.jobs+q.live.addedJobs, q.live.bytes+q.live.addedBytes
	if jobs+n > q.opts.Queue.MaxLiveJobs || b+bytes > q.opts.Queue.MaxLiveBytes {
		return fmt.Errorf("%s: %w: about %d unfinished jobs (%d payload bytes) held; limits %d jobs, %d bytes",
			what, queue.ErrFull, jobs, b, q.opts.Queue.MaxLiveJobs, q.opts.Queue.MaxLiveBytes)
	}
	return nil
}

// added counts jobs this replica made live since the last count.
func (q *Queue) added(n int, bytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.live.addedJobs += n
	q.live.addedBytes += bytes
}
