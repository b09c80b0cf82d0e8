package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tunnel-dev/tunnel/bunny/handler"
	"github.com/tunnel-dev/tunnel/relay/client"
)

// leaseLoop leases jobs while ctx lasts, never more than the free slots,
// and starts each; the jobs run under runCtx and report under life.
func (w *Worker) leaseLoop(ctx, runCtx, life context.Context, jobs interface{ Go(func()) }) {
	failures := 0
	var waitStart time.Time // when free slots started waiting for work
	for ctx.Err() == nil {
		free := w.waitFree(ctx)
		if free == 0 {
			return
		}
		c, err := w.conn(ctx)
		if err != nil {
			return
		}
		if waitStart.IsZero() {
			waitStart = time.Now()
		}
		cctx, cancel := context.WithTimeout(ctx, w.opts.LeaseWait+w.opts.CallTimeout)
		got, err := c.Lease(cctx, client.LeaseOptions{Queues: w.queues, Max: free, Wait: w.opts.LeaseWait, Session: w.leases})
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			switch {
			case isConnFailure(err):
				// The connection loop logs the outage; wait for the next.
				w.markBroken(c, err)
			case errors.Is(err, client.ErrOverloaded):
				sleep(ctx, max(client.RetryAfter(err), w.backoff(1)))
			default:
				failures++
				level := slog.LevelDebug
				if failures == 1 {
					level = slog.LevelWarn
				}
				w.log.Log(ctx, level, "leasing failed; retrying with backoff", "err", err, "attempt", failures)
				sleep(ctx, w.backoff(failures))
			}
			continue
		}
		if failures > 0 {
			w.log.Info("leasing works again", "after", failures)
			failures = 0
		}
		if len(got) == 0 {
			continue
		}
		w.m.leaseWait.Observe(time.Since(waitStart).Seconds())
		waitStart = time.Time{}
		for i, j := range got {
			if ctx.Err() != nil || i >= free {
				// The stop signal came while the answer was on its way
				// (or relay sent more than asked): hand it straight back.
				fb := w.register(runCtx, j)
				jobs.Go(func() { w.failBack(life, fb) })
				continue
			}
			h := w.register(runCtx, j)
			jobs.Go(func() { w.runJob(life, h) })
		}
	}
}

// waitFree waits for a free slot and returns how many are free, or 0 when
// ctx ends.
func (w *Worker) waitFree(ctx context.Context) int {
	for {
		w.mu.Lock()
		free := w.opts.Concurrency - len(w.held)
		w.mu.Unlock()
		if free > 0 {
			return free
		}
		select {
		case <-w.slotFree:
		case <-ctx.Done():
			return 0
		}
	}
}

// register records a lease as held, taking a slot.
func (w *Worker) register(runCtx context.Context, j client.Job) *heldJob {
	jctx, cancel := context.WithCancelCause(runCtx)
	h := &heldJob{job: j, ctx: jctx, cancel: cancel}
	w.mu.Lock()
	w.held[leaseKey{j.ID, j.Lease.Attempt}] = h
	w.mu.Unlock()
	select {
	case w.hbWake <- struct{}{}:
	default:
	}
	return h
}

// release forgets a lease and frees its slot.
func (w *Worker) release(h *heldJob) {
	h.cancel(nil)
	w.mu.Lock()
	delete(w.held, leaseKey{h.job.ID, h.job.Lease.Attempt})
	w.mu.Unlock()
	select {
	case w.slotFree <- struct{}{}:
	default:
	}
}

func (w *Worker) jobLog(h *heldJob) *slog.Logger {
	return w.log.With("job", h.job.ID, "queue", h.job.Queue, "attempt", h.job.Lease.Attempt)
}

// runJob runs one job's handler and reports its outcome.
func (w *Worker) runJob(life context.Context, h *heldJob) {
	defer w.release(h)
	j := h.job
	log := w.jobLog(h)
	hd := w.opts.Handlers[j.Queue]
	var result []byte
	var err error
	if hd == nil {
		err = fmt.Errorf("bunny has no handler for queue %q", j.Queue)
	} else {
		w.m.running.Inc()
		start := time.Now()
		result, err = hd.Run(h.ctx, handler.Job{ID: j.ID, Queue: j.Queue, Attempt: j.Lease.Attempt, Payload: j.Payload})
		outcome := "ok"
		if err != nil {
			outcome = "error"
		}
		w.m.duration.WithLabelValues(j.Queue, outcome).Observe(time.Since(start).Seconds())
		w.m.running.Dec()
	}
	cause := context.Cause(h.ctx)
	switch {
	case h.lost.Load():
		w.m.lost.WithLabelValues(j.Queue).Inc()
		log.Warn("dropping the job: relay says its lease is no longer ours (it expired and the job moved on)")
	case err == nil:
		// A result that arrives first completes even a job whose cancel
		// was requested.
		w.complete(life, h, result)
	case errors.Is(cause, errCancelRequested):
		w.fail(life, h, "cancelled", "cancelled at relay's request", client.FailOptions{})
	case errors.Is(cause, errShutdown):
		w.fail(life, h, "shutdown", "bunny shut down before the job finished; failed back for redelivery", client.FailOptions{RetryAfter: FailBackRetryAfter})
	default:
		log.Info("job failed", "err", err)
		w.fail(life, h, "handler", err.Error(), client.FailOptions{})
	}
}

// failBack returns a job bunny will not run.
func (w *Worker) failBack(life context.Context, h *heldJob) {
	defer w.release(h)
	w.fail(life, h, "shutdown", "bunny is shutting down; failed back unstarted for redelivery", client.FailOptions{RetryAfter: FailBackRetryAfter})
}

func (w *Worker) complete(life context.Context, h *heldJob, result []byte) {
	err := w.settle(life, h, "complete", func(ctx context.Context, c *client.Client) error {
		// Completions of slots finishing together share one call.
		_, err := c.CompleteShared(ctx, h.job.Lease, result)
		return err
	})
	switch {
	case err == nil:
		w.m.succeeded.WithLabelValues(h.job.Queue).Inc()
		w.jobLog(h).Debug("job succeeded", "result_bytes", len(result))
	case errors.Is(err, client.ErrInvalid):
		// relay will never take this result (too large for its limit,
		// say): the job fails instead, saying why.
		w.fail(life, h, "rejected", "relay refused the result: "+err.Error(), client.FailOptions{})
	}
}

func (w *Worker) fail(life context.Context, h *heldJob, reason, msg string, o client.FailOptions) {
	var res client.FailResult
	err := w.settle(life, h, "fail", func(ctx context.Context, c *client.Client) error {
		var err error
		res, err = c.Fail(ctx, h.job.Lease, msg, o)
		return err
	})
	if err == nil {
		w.m.failed.WithLabelValues(h.job.Queue, reason).Inc()
		w.jobLog(h).Debug("job failed back", "reason", reason, "state", res.State)
	}
}

// settle repeats call until relay answers it definitively: nil (done),
// or an error other than a connection failure or overload. It gives up
// when life ends or the lease is lost. The result stays held (and the
// lease heartbeated) meanwhile, across reconnects.
func (w *Worker) settle(life context.Context, h *heldJob, what string, call func(context.Context, *client.Client) error) error {
	w.m.pending.Inc()
	defer w.m.pending.Dec()
	log := w.jobLog(h)
	for attempt := 1; ; attempt++ {
		if h.lost.Load() {
			w.m.lost.WithLabelValues(h.job.Queue).Inc()
			log.Warn("dropping the job's "+what+": relay says its lease is no longer ours", "attempts", attempt-1)
			return client.ErrLeaseLost
		}
		c, err := w.conn(life)
		if err != nil {
			log.Warn("giving up on the job's "+what+" at shutdown; relay redelivers the job when its lease expires", "attempts", attempt-1)
			return err
		}
		ctx, cancel := context.WithTimeout(life, w.opts.CallTimeout)
		err = call(ctx, c)
		cancel()
		if err == nil {
			if attempt > 1 {
				log.Info("delivered the job's "+what+" after retrying", "attempts", attempt)
			}
			return nil
		}
		if life.Err() != nil {
			log.Warn("giving up on the job's "+what+" at shutdown; relay redelivers the job when its lease expires", "attempts", attempt, "err", err)
			return err
		}
		var wait time.Duration
		switch {
		case errors.Is(err, client.ErrLeaseLost):
			w.m.lost.WithLabelValues(h.job.Queue).Inc()
			log.Warn("relay refused the job's "+what+": the lease is no longer ours (relay redelivered or settled the job)", "err", err)
			return err
		case isConnFailure(err):
			w.markBroken(c, err)
			wait = min(w.backoff(attempt), time.Second)
		case errors.Is(err, client.ErrOverloaded):
			wait = max(client.RetryAfter(err), w.backoff(attempt))
		case errors.Is(err, client.ErrInvalid), errors.Is(err, client.ErrUnauthorized), errors.Is(err, client.ErrNotFound),
			errors.Is(err, client.ErrVersion), errors.Is(err, client.ErrBadFrame):
			log.Error("relay refused the job's "+what+"; relay redelivers the job when its lease expires", "err", err)
			return err
		default:
			wait = w.backoff(attempt)
		}
		w.m.settleErrors.WithLabelValues(what).Inc()
		if attempt == 1 {
			log.Warn("could not deliver the job's "+what+"; holding it and retrying", "err", err)
		}
		if !sleep(life, wait) {
			continue // the loop's conn() reports the shutdown
		}
	}
}

// heartbeats extends every held lease every third of the shortest lease
// duration held, and acts on what relay answers.
func (w *Worker) heartbeats(life context.Context) {
	const (
		minInterval = 100 * time.Millisecond
		maxInterval = 10 * time.Second
	)
	interval := func() time.Duration {
		w.mu.Lock()
		defer w.mu.Unlock()
		d := maxInterval
		for _, h := range w.held {
			if ld := h.job.LeaseDuration / 3; ld > 0 && ld < d {
				d = ld
			}
		}
		return max(d, minInterval)
	}
	next := time.Now().Add(interval())
	t := time.NewTimer(time.Until(next))
	defer t.Stop()
	for {
		select {
		case <-life.Done():
			return
		case <-w.hbWake:
			if n := time.Now().Add(interval()); n.Before(next) {
				next = n
				t.Reset(time.Until(next))
			}
			continue
		case <-t.C:
		}
		iv := interval()
		next = time.Now().Add(iv)
		if err := w.heartbeat(life, iv); err != nil {
			// Try again soon: the connection loop is redialling.
			next = time.Now().Add(min(iv/2, time.Second))
		}
		t.Reset(time.Until(next))
	}
}

func (w *Worker) heartbeat(life context.Context, budget time.Duration) error {
	w.mu.Lock()
	hs := make([]*heldJob, 0, len(w.held))
	leases := make([]client.Lease, 0, len(w.held))
	for _, h := range w.held {
		hs = append(hs, h)
		leases = append(leases, h.job.Lease)
	}
	w.mu.Unlock()
	if len(hs) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(life, max(budget, w.opts.CallTimeout))
	defer cancel()
	c, err := w.conn(ctx)
	if err != nil {
		return err
	}
	sts, err := c.Heartbeat(ctx, leases, false)
	if err != nil {
		if life.Err() == nil {
			w.log.Debug("heartbeat failed", "err", err, "leases", len(leases))
			if isConnFailure(err) {
				w.markBroken(c, err)
			}
		}
		return err
	}
	for i, st := range sts {
		h := hs[i]
		switch st.State {
		case client.CancelRequested:
			if !h.cancelSeen.Swap(true) {
				w.jobLog(h).Info("relay asks to cancel the job; stopping it")
			}
			h.cancel(errCancelRequested)
		case client.Lost:
			if !h.lost.Swap(true) {
				w.jobLog(h).Warn("relay says the lease is lost; stopping the job")
			}
			h.cancel(errLost)
		}
	}
	return nil
}
