package queue

import (
	"time"

	"github.com/tunnel-dev/tunnel/internal/backoff"
)

// Backoff spaces a job's retries: before attempt n+1 it waits about
// Base·2^(n-1), capped at Max, with "equal jitter": half of that fixed and
// half random, so retries of jobs that failed together spread out but still
// back off.
type Backoff struct {
	Base time.Duration // 1s
	Max  time.Duration // 10m
}

func (b *Backoff) setDefaults() {
	if b.Base <= 0 {
		b.Base = time.Second
	}
	if b.Max <= 0 {
		b.Max = 10 * time.Minute
	}
	if b.Max < b.Base {
		b.Max = b.Base
	}
}

// Delay is the wait after failed attempt n (1 for the first).
func (b Backoff) Delay(n uint32) time.Duration {
	// From attempt 63 on the delay is Max whatever Base is.
	return backoff.Policy{Base: b.Base, Max: b.Max}.Delay(int(min(n, 64)))
}
