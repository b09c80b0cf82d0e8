package ratelog

import (
	"sync"
	"time"
)

// DefaultMaxKeys bounds the keys a Limiter remembers when MaxKeys is zero.
const DefaultMaxKeys = 4096

// Limiter allows one event per key per Every. The zero value is not
// usable; set Every.
type Limiter struct {
	// Every is the shortest time between two allowed events of one key.
	Every time.Duration
	// MaxKeys bounds the keys remembered, so a flood of distinct keys
	// (spoofed source addresses) cannot grow memory: past it, keys whose
	// interval has passed are forgotten first, then every key shares one
	// entry. Zero means DefaultMaxKeys.
	MaxKeys int

	mu   sync.Mutex
	keys map[string]*entry
}

type entry struct {
	last       time.Time
	suppressed uint64
}

// overflow is the entry every key shares once MaxKeys are remembered.
const overflow = "\x00overflow"

// Allow reports whether the event for key at now should be logged, and
// how many events of that key were suppressed since the last one allowed
// (to log with it).
func (l *Limiter) Allow(key string, now time.Time) (ok bool, suppressed uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.keys == nil {
		l.keys = map[string]*entry{}
	}
	e, found := l.keys[key]
	if !found {
		if len(l.keys) >= l.maxKeys() {
			l.forget(now)
		}
		if len(l.keys) >= l.maxKeys() {
			key = overflow
			e = l.keys[overflow]
		}
		if e == nil {
			e = &entry{}
			l.keys[key] = e
			e.last = now
			return true, 0
		}
	}
	if now.Sub(e.last) < l.Every {
		e.suppressed++
		return false, 0
	}
	n := e.suppressed
	e.last, e.suppressed = now, 0
	return true, n
}

func (l *Limiter) maxKeys() int {
	if l.MaxKeys > 0 {
		return l.MaxKeys
	}
	return DefaultMaxKeys
}

// forget drops the keys whose interval has passed and that suppressed
// nothing since (their next event would be allowed anyway).
func (l *Limiter) forget(now time.Time) {
	for k, e := range l.keys {
		if k != overflow && now.Sub(e.last) >= l.Every && e.suppressed == 0 {
			delete(l.keys, k)
		}
	}
}
