package ratelog

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := &Limiter{Every: 10 * time.Second}
	t0 := time.Unix(1000, 0)
	steps := []struct {
		key        string
		at         time.Duration
		ok         bool
		suppressed uint64
	}{
		{"a", 0, true, 0},
		{"a", time.Second, false, 0},
		{"b", time.Second, true, 0}, // keys are independent
		{"a", 2 * time.Second, false, 0},
		{"a", 9 * time.Second, false, 0},
		{"a", 10 * time.Second, true, 3},
		{"a", 21 * time.Second, true, 0},
		{"b", 21 * time.Second, true, 0},
	}
	for i, s := range steps {
		ok, n := l.Allow(s.key, t0.Add(s.at))
		if ok != s.ok || n != s.suppressed {
			t.Fatalf("step %d (%s at %v): got %v, %d suppressed; want %v, %d", i, s.key, s.at, ok, n, s.ok, s.suppressed)
		}
	}
}

// Past MaxKeys, new keys share one entry: a flood of distinct sources
// gives one line per interval, and memory stays bounded.
func TestLimiterBoundsKeys(t *testing.T) {
	l := &Limiter{Every: 10 * time.Second, MaxKeys: 4}
	t0 := time.Unix(1000, 0)
	allowed := 0
	for i := range 100 {
		if ok, _ := l.Allow(fmt.Sprint("src", i), t0.Add(time.Duration(i)*time.Millisecond)); ok {
			allowed++
		}
	}
	if allowed != 5 { // four remembered keys and the shared overflow entry
		t.Fatalf("allowed %d of 100 distinct keys in one interval, want 5", allowed)
	}
	if len(l.keys) > 5 {
		t.Fatalf("remembers %d keys, MaxKeys is 4", len(l.keys))
	}
	// After the interval, idle keys are forgotten and new ones get entries.
	ok, n := l.Allow("later", t0.Add(time.Minute))
	if !ok || n != 0 {
		t.Fatalf("a new key after the interval: %v, %d", ok, n)
	}
	ok, n = l.Allow("another", t0.Add(time.Minute))
	if !ok || n != 0 {
		t.Fatalf("a second new key after the interval: %v, %d", ok, n)
	}
}
