package node

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"time"
)

// ProfileEnv names a directory: a node process started with it set writes
// a CPU profile of its whole life there, and a heap profile taken when its
// heap was largest. `tunnel bench --profile DIR` sets it.
const ProfileEnv = "TUNNEL_BENCH_PROFILE"

// profile starts profiling a node if ProfileEnv asks; stop writes the
// profiles.
func profile(ctx context.Context, spec Spec) (stop func(), err error) {
	dir := os.Getenv(ProfileEnv)
	if dir == "" {
		return func() {}, nil
	}
	base := filepath.Join(dir, fmt.Sprintf("%s-%s-%d", spec.Impl, spec.Role, os.Getpid()))
	cpu, err := os.Create(base + ".cpu.pprof")
	if err != nil {
		return nil, fmt.Errorf("profiling: %w", err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		cpu.Close()
		return nil, fmt.Errorf("profiling: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var peak uint64
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse <= peak {
				continue
			}
			peak = ms.HeapInuse
			if f, err := os.Create(base + ".heap.pprof"); err == nil {
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		}
	}()
	return func() {
		cancel()
		<-done
		pprof.StopCPUProfile()
		cpu.Close()
	}, nil
}
