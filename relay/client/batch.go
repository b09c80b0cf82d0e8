package client

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	pb "google.golang.org/protobuf/proto"

	"github.com/tunnel-dev/tunnel/relay/proto"
)

// Completion is one lease to settle with its result, in CompleteBatch.
type Completion struct {
	Lease  Lease
	Result []byte
}

// CompleteResult is one completion's answer, as Complete would give it:
// Duplicate, or an error such as ErrLeaseLost.
type CompleteResult struct {
	Duplicate bool
	Err       error
}

// batchInFlight bounds the coalesced completion calls one connection has
// out at once; completions made meanwhile wait and share the next call.
const batchInFlight = 2

// frameRoom is what a request frame needs besides its completions.
const frameRoom = 1 << 10

// batcher coalesces one connection's completions (CompleteShared), with
// the lock that guards it.
type batcher struct {
	// single: relay answered a batch call as unknown (it predates
	// them); complete one by one from then on.
	single atomic.Bool

	mu       sync.Mutex
	inFlight int
	waiting  []*sharedCompletion
}

type sharedCompletion struct {
	Completion
	ctx  context.Context
	done chan CompleteResult
}

// CompleteBatch settles several leases in as few calls as relay's frame
// and batch limits allow (one, usually), each answered as Complete would
// answer it. The error is for a call as a whole (ErrConnectionLost, a
// context's end): then the outcome of every completion is unknown, and
// repeating them is safe.
func (c *Client) CompleteBatch(ctx context.Context, cs []Completion) ([]CompleteResult, error) {
	out := make([]CompleteResult, 0, len(cs))
	for len(cs) > 0 {
		n := batchLen(cs)
		res, err := c.completeCall(ctx, cs[:n])
		if err != nil {
			return nil, err
		}
		out = append(out, res...)
		cs = cs[n:]
	}
	return out, nil
}

// batchLen is how many of cs fit one call (at least one).
func batchLen(cs []Completion) int {
	size := frameRoom
	for i, c := range cs {
		size += len(c.Lease.JobID) + len(c.Lease.Token) + len(c.Result) + 32
		if i > 0 && (i == proto.MaxCompleteBatch || size > proto.MaxRequestFrame) {
			return i
		}
	}
	return len(cs)
}

// completeCall settles cs in one call (a lone completion, or any for a
// relay that predates batches, as Complete).
func (c *Client) completeCall(ctx context.Context, cs []Completion) ([]CompleteResult, error) {
	if len(cs) == 1 || c.batch.single.Load() {
		return c.completeEach(ctx, cs), nil
	}
	reqs := make([]*proto.CompleteRequest, len(cs))
	for i, x := range cs {
		reqs[i] = &proto.CompleteRequest{Lease: x.Lease.wire(), Result: x.Result}
	}
	req := &proto.Request{Call: &proto.Request_CompleteBatch{CompleteBatch: &proto.CompleteBatchRequest{Completions: reqs}}}
	if pb.Size(req) > proto.MaxRequestFrame {
		return c.completeEach(ctx, cs), nil
	}
	resp, err := c.call(ctx, "complete batch", req)
	if errors.Is(err, ErrInvalid) {
		// Only a relay without the call refuses a batch this client
		// built as a whole; each completion's own errors come per result.
		c.batch.single.Store(true)
		return c.completeEach(ctx, cs), nil
	}
	if err != nil {
		return nil, err
	}
	rs := resp.GetCompleteBatch().GetResults()
	if resp.GetCompleteBatch() == nil || len(rs) != len(cs) {
		return nil, fmt.Errorf("complete batch: %w: %d results for %d completions", ErrBadFrame, len(rs), len(cs))
	}
	out := make([]CompleteResult, len(cs))
	for i, r := range rs {
		if e := proto.FromWire(r.GetError()); e != nil {
			out[i].Err = fmt.Errorf("complete %s: %w", cs[i].Lease.JobID, e)
			continue
		}
		out[i].Duplicate = r.GetDuplicate()
	}
	return out, nil
}

// completeEach completes each of cs with its own call, all at once.
func (c *Client) completeEach(ctx context.Context, cs []Completion) []CompleteResult {
	out := make([]CompleteResult, len(cs))
	var wg sync.WaitGroup
	for i, x := range cs {
		wg.Go(func() { out[i].Duplicate, out[i].Err = c.Complete(ctx, x.Lease, x.Result) })
	}
	wg.Wait()
	return out
}

// CompleteShared is Complete sharing a call with the completions made on
// this client at the same time: it goes out at once unless batchInFlight
// calls are out already, and then with everything that waits when one of
// them returns. A lone completion is never delayed. The call runs under
// the context of its first completion still waiting.
func (c *Client) CompleteShared(ctx context.Context, l Lease, result []byte) (duplicate bool, err error) {
	me := &sharedCompletion{Completion: Completion{Lease: l, Result: result}, ctx: ctx, done: make(chan CompleteResult, 1)}
	b := &c.batch
	b.mu.Lock()
	b.waiting = append(b.waiting, me)
	var run []*sharedCompletion
	if b.inFlight < batchInFlight {
		b.inFlight++
		run, b.waiting = b.waiting, nil
	}
	b.mu.Unlock()
	if run != nil {
		c.runShared(run)
	}
	select {
	case r := <-me.done:
		return r.Duplicate, r.Err
	case <-ctx.Done():
		return false, fmt.Errorf("complete: %w", ctx.Err())
	}
}

// runShared sends one coalesced call, answers it, and hands what waits
// meanwhile to a call of its own.
func (c *Client) runShared(run []*sharedCompletion) {
	var live []*sharedCompletion
	for _, s := range run {
		if s.ctx.Err() == nil { // the others have returned
			live = append(live, s)
		}
	}
	if len(live) > 0 {
		cs := make([]Completion, len(live))
		for i, s := range live {
			cs[i] = s.Completion
		}
		res, err := c.CompleteBatch(live[0].ctx, cs)
		for i, s := range live {
			if err != nil {
				s.done <- CompleteResult{Err: err}
				continue
			}
			s.done <- res[i]
		}
	}
	b := &c.batch
	b.mu.Lock()
	next := b.waiting
	b.waiting = nil
	if len(next) == 0 {
		b.inFlight--
	}
	b.mu.Unlock()
	if len(next) > 0 {
		go c.runShared(next)
	}
}
