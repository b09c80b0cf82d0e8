package backoff

import (
	"math"
	"testing"
	"time"
)

func TestCeiling(t *testing.T) {
	tests := []struct {
		name      string
		base, max time.Duration
		n         int
		want      time.Duration
	}{
		{"first attempt", time.Second, time.Minute, 1, time.Second},
		{"zero counts as first", time.Second, time.Minute, 0, time.Second},
		{"negative counts as first", time.Second, time.Minute, -3, time.Second},
		{"doubles", time.Second, time.Minute, 2, 2 * time.Second},
		{"doubles again", 200 * time.Millisecond, 30 * time.Second, 4, 1600 * time.Millisecond},
		{"capped", time.Second, time.Minute, 7, time.Minute},
		{"exactly at the cap", time.Second, 8 * time.Second, 4, 8 * time.Second},
		{"base equals max", time.Millisecond, time.Millisecond, 5, time.Millisecond},
		{"shift past 62 bits", time.Second, time.Hour, 200, time.Hour},
		{"shift that overflows", time.Hour, 1<<62 - 1, 40, 1<<62 - 1},
		{"largest attempt", time.Nanosecond, time.Second, math.MaxInt, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := Policy{Base: tt.base, Max: tt.max}
			if got := p.Ceiling(tt.n); got != tt.want {
				t.Fatalf("Ceiling(%d) = %v, want %v", tt.n, got, tt.want)
			}
		})
	}
}

func TestDelayIsEqualJitter(t *testing.T) {
	tests := []struct {
		name string
		p    Policy
		n    int
	}{
		{"even ceiling", Policy{Base: 10 * time.Millisecond, Max: time.Second}, 3},
		{"odd ceiling", Policy{Base: 3, Max: 3}, 1},
		{"one nanosecond", Policy{Base: 1, Max: 1}, 9},
		{"capped", Policy{Base: time.Second, Max: 10 * time.Minute}, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.p.Ceiling(tt.n)
			lo, hi := c, time.Duration(0)
			for range 2000 {
				d := tt.p.Delay(tt.n)
				if d < c/2 || d > c {
					t.Fatalf("Delay(%d) = %v, want %v to %v", tt.n, d, c/2, c)
				}
				lo, hi = min(lo, d), max(hi, d)
			}
			// The random half is used: not every delay is the same
			// (unless the range is a single value).
			if c/2 != c && lo == hi {
				t.Fatalf("Delay(%d) was %v 2000 times; want a spread over %v to %v", tt.n, lo, c/2, c)
			}
		})
	}
}

func TestZeroPolicy(t *testing.T) {
	if d := (Policy{}).Delay(3); d != 0 {
		t.Fatalf("zero Policy: Delay = %v, want 0", d)
	}
}
