package server

import (
	"github.com/tunnel-dev/tunnel/relay/auth"
	"github.com/tunnel-dev/tunnel/relay/proto"
	"github.com/tunnel-dev/tunnel/relay/queue"
)

// completeBatch settles several leases, each answered as complete would
// answer it alone; the queue settles them together (one statement and one
// commit on PostgreSQL).
func (c *call) completeBatch(r *proto.CompleteBatchRequest) *proto.Response {
	cs := r.GetCompletions()
	switch {
	case len(cs) == 0:
		return c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "completions: empty; give at least one"))
	case len(cs) > proto.MaxCompleteBatch:
		return c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "completions: %d; at most %d in one call", len(cs), proto.MaxCompleteBatch))
	}
	results := make([]*proto.CompleteResult, len(cs))
	var items []queue.Completion
	var at []int // items[k] answers results[at[k]]
	for i, cr := range cs {
		l := cr.GetLease()
		if l.GetJobId() == "" {
			e := c.refuse("invalid_argument", proto.Errorf(proto.Code_INVALID_ARGUMENT, "completions[%d].lease.job_id: missing", i))
			results[i] = &proto.CompleteResult{Error: e.Error}
			continue
		}
		if resp := c.authorize(l.GetJobId(), auth.Complete); resp != nil {
			results[i] = &proto.CompleteResult{Error: resp.Error}
			continue
		}
		items = append(items, queue.Completion{Ref: refOf(l), Result: cr.GetResult()})
		at = append(at, i)
	}
	for k, res := range queue.CompleteBatch(c.ctx, c.s.q, c.worker.Name, items) {
		if res.Err != nil {
			results[at[k]] = &proto.CompleteResult{Error: c.fromQueueError(res.Err).Error}
			continue
		}
		results[at[k]] = &proto.CompleteResult{Duplicate: res.Duplicate}
	}
	return &proto.Response{Result: &proto.Response_CompleteBatch{CompleteBatch: &proto.CompleteBatchResponse{Results: results}}}
}
