package testutil

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// Buffer is a bytes.Buffer that concurrent writers (a logger, a child
// process's output) and the test reading it may share. The zero value is
// ready to use.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

// String is everything written so far.
func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// Contains reports whether s has been written.
func (b *Buffer) Contains(s string) bool { return strings.Contains(b.String(), s) }

// Count is how many times s has been written.
func (b *Buffer) Count(s string) int { return strings.Count(b.String(), s) }

// Logger is a text logger at debug level writing into b.
func (b *Buffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// logTail is how much of a failed test's log Logger prints.
const logTail = 64 << 10

// Logger is a debug-level logger for the code under test whose output is
// printed, its last 64 KiB, only if t fails: a failure in CI then comes
// with what the gateways said. Make it before what it logs for, so that
// the printing cleanup runs after theirs.
func Logger(t testing.TB) *slog.Logger {
	b := &Buffer{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		s := b.String()
		if len(s) > logTail {
			s = "…" + s[len(s)-logTail:]
		}
		t.Logf("log of the code under test:\n%s", s)
	})
	return b.Logger()
}
