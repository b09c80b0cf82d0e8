package testutil

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestEventuallyWaitsForTheCondition(t *testing.T) {
	var n atomic.Int32
	start := time.Now()
	Eventually(t, 5*time.Second, "three polls", func() bool { return n.Add(1) >= 3 })
	if n.Load() != 3 {
		t.Fatalf("cond called %d times, want 3", n.Load())
	}
	if el := time.Since(start); el < 2*PollInterval {
		t.Fatalf("returned after %v; want at least two poll intervals", el)
	}
}

// failRecorder records a Fatalf without ending the test goroutine's caller.
type failRecorder struct {
	testing.TB
	msg string
}

func (f *failRecorder) Helper() {}
func (f *failRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	panic(f)
}

func TestEventuallyFailsAfterTheDeadline(t *testing.T) {
	f := &failRecorder{TB: t}
	func() {
		defer func() {
			if r := recover(); r != f {
				t.Fatalf("recovered %v, want the recorder's Fatalf", r)
			}
		}()
		Eventually(f, 30*time.Millisecond, "never", func() bool { return false })
	}()
	if want := "timed out after 30ms waiting for never"; f.msg != want {
		t.Fatalf("message %q, want %q", f.msg, want)
	}
}

func TestBufferConcurrentWriters(t *testing.T) {
	var b Buffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "w%d;", i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	for i := range 8 {
		if got := b.Count(fmt.Sprintf("w%d;", i)); got != 100 {
			t.Fatalf("writer %d: %d writes, want 100", i, got)
		}
	}
	b.Logger().Debug("logged", "k", "v")
	if !b.Contains("w7;") || b.Contains("w8;") || !b.Contains("level=DEBUG msg=logged k=v") {
		t.Fatal("Contains disagrees with what was written")
	}
}

func TestKeys(t *testing.T) {
	a, b := Identity(t, "a"), Identity(t, "b")
	if a.Pin() == b.Pin() {
		t.Fatal("two identities share a pin")
	}
	if a.Name() != "a" {
		t.Fatalf("identity name %q, want a", a.Name())
	}
	k1, k2 := PrivateKey(t), PrivateKey(t)
	if k1 == k2 || k1.Public() == k2.Public() {
		t.Fatal("two private keys are equal")
	}
}
