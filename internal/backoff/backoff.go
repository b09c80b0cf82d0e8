package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is an exponential backoff: the delay after failed attempt n is
// about Base·2^(n-1), at most Max. Both must be positive and Base ≤ Max;
// callers apply their own defaults.
type Policy struct {
	Base time.Duration
	Max  time.Duration
}

// Ceiling is the un-jittered delay after failed attempt n (1 for the
// first; less than 1 counts as 1): Base·2^(n-1), capped at Max without
// overflowing.
func (p Policy) Ceiling(n int) time.Duration {
	d := p.Max
	if n < 1 {
		n = 1
	}
	if shift := n - 1; shift < 62 {
		if x := p.Base << shift; x > 0 && x>>shift == p.Base && x < p.Max {
			d = x
		}
	}
	return d
}

// Delay is the wait after failed attempt n: a uniformly random duration
// from half of Ceiling(n) to all of it, inclusive.
func (p Policy) Delay(n int) time.Duration {
	d := p.Ceiling(n)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
