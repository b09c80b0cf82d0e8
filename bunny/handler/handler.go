package handler

import (
	"context"
	"errors"
	"fmt"
	"unicode/utf8"
)

// Job is what a handler is given.
type Job struct {
	ID      string
	Queue   string
	Attempt uint32
	Payload []byte
}

// Handler runs jobs. Run must return soon after ctx ends.
type Handler interface {
	Run(ctx context.Context, job Job) ([]byte, error)
}

// ErrOutputTooLarge is matched by the error of a job whose output passed
// its cap.
var ErrOutputTooLarge = errors.New("output larger than the cap")

// ErrTimeout is matched by the error of a job stopped by its timeout.
var ErrTimeout = errors.New("timed out")

// tail keeps the last n bytes written to it.
type tail struct {
	n   int
	buf []byte
	cut bool
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if len(t.buf) > t.n {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-t.n:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	b := t.buf
	if t.cut {
		// Do not start inside a UTF-8 sequence.
		for len(b) > 0 && !utf8.RuneStart(b[0]) {
			b = b[1:]
		}
		return "…" + string(b)
	}
	return string(b)
}

// head returns the first n bytes of b as text, marked if cut.
func head(b []byte, n int) string {
	if len(b) <= n {
		return string(b)
	}
	b = b[:n]
	for len(b) > 0 && !utf8.Valid(b) {
		b = b[:len(b)-1]
	}
	return string(b) + "…"
}

// capped collects up to limit bytes; past that it discards, remembers,
// and calls over once.
type capped struct {
	limit  int
	buf    []byte
	over   bool
	onOver func()
}

func (c *capped) Write(p []byte) (int, error) {
	if c.over {
		return len(p), nil
	}
	if len(c.buf)+len(p) > c.limit {
		c.over = true
		c.buf = nil
		if c.onOver != nil {
			c.onOver()
		}
		return len(p), nil
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

func overErr(limit int) error {
	return fmt.Errorf("%w (%d bytes)", ErrOutputTooLarge, limit)
}

// Func is a Handler that is a Go function (for bunny embedded in another
// program).
type Func func(ctx context.Context, job Job) ([]byte, error)

// Run calls f.
func (f Func) Run(ctx context.Context, job Job) ([]byte, error) { return f(ctx, job) }
