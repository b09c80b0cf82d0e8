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
// that commits in groups commits them together.
func CompleteBatch(ctx context.Context, b Backend, worker string, cs []Completion) []CompleteResult {
	if bc, ok := b.(BatchCompleter); ok {
		return bc.CompleteBatch(ctx, worker, cs)
	}
	out := make([]CompleteResult, len(cs))
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Go(func() {
			out[i].Duplicate, out[i].Err = b.Complete(ctx, worker, c.Ref, c.Result)
		})
	}
	wg.Wait()
	return out
}
