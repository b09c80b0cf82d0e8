package queue

import (
	"context"
	"sync"
)

// Completion is one lease to settle with a result, in a CompleteBatch.
type Completion struct {
	Ref    Ref
	Result []byte
}

// CompleteResult is one completion's answer, in the order asked: as
// Complete answers it (Duplicate, or an error such as ErrLeaseLost).
type CompleteResult struct {
	Duplicate bool
	Err       error
}

// BatchCompleter is a Backend that settles several of a worker's
// completions at once (relay/pgqueue: one statement and one commit).
// Each completion keeps Complete's semantics; one failing does not fail
// the others.
type BatchCompleter interface {
	CompleteBatch(ctx context.Context, worker string, cs []Completion) []CompleteResult
}

// CompleteBatch settles cs for worker on b: in one call if b is a
// BatchCompleter, else with one Complete each, run at once so a store
// that commits in groups commits them together. Completions of one job
// are settled in order either way: the first valid one wins.
func CompleteBatch(ctx context.Context, b Backend, worker string, cs []Completion) []CompleteResult {
	if bc, ok := b.(BatchCompleter); ok {
		return bc.CompleteBatch(ctx, worker, cs)
	}
	byJob := map[string][]int{}
	var order []string
	for i, c := range cs {
		if byJob[c.Ref.JobID] == nil {
			order = append(order, c.Ref.JobID)
		}
		byJob[c.Ref.JobID] = append(byJob[c.Ref.JobID], i)
	}
	out := make([]CompleteResult, len(cs))
	var wg sync.WaitGroup
	for _, id := range order {
		wg.Go(func() {
			for _, i := range byJob[id] {
				out[i].Duplicate, out[i].Err = b.Complete(ctx, worker, cs[i].Ref, cs[i].Result)
			}
		})
	}
	wg.Wait()
	return out
}
