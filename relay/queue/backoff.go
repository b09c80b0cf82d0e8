package queue

import (
	"math/rand/v2"
	"time"
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
	d := b.Max
	if n < 1 {
		n = 1
	}
	if shift := n - 1; shift < 62 {
		if x := b.Base << shift; x > 0 && x>>shift == b.Base && x < b.Max {
			d = x
		}
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
