package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Fraction of the cgroup limit given to the Go runtime: the rest is for
// what it does not manage (the kernel's socket buffers are charged to the
// cgroup too) and for slack.
const Fraction = 0.9

// unlimited: cgroup v1 reports "no limit" as a number near 2^63.
const unlimited = 1 << 62

// Limit is the memory limit of the cgroup this process is in, in bytes,
// read from the cgroup file system mounted at root (/sys/fs/cgroup): v2's
// memory.max, else v1's memory.limit_in_bytes. ok is false when there is
// no limit. procCgroup is the content of /proc/self/cgroup.
func Limit(fsys fs.FS, procCgroup string) (limit int64, ok bool, err error) {
	v2, v1, err := parseProcCgroup(procCgroup)
	if err != nil {
		return 0, false, err
	}
	var candidates []string
	if v2 != "" {
		// With a cgroup namespace the path is "/" and the mount shows the
		// container's own cgroup; without one, the full path.
		candidates = append(candidates, path.Join(strings.TrimPrefix(v2, "/"), "memory.max"), "memory.max")
	}
	if v1 != "" {
		candidates = append(candidates, path.Join("memory", strings.TrimPrefix(v1, "/"), "memory.limit_in_bytes"), "memory/memory.limit_in_bytes")
	}
	for _, c := range candidates {
		b, err := fs.ReadFile(fsys, path.Clean(c))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return 0, false, fmt.Errorf("reading the cgroup memory limit: %w", err)
		}
		return parseLimit(string(b))
	}
	return 0, false, nil
}

// parseProcCgroup finds this process's cgroup v2 path and v1 memory
// controller path in /proc/self/cgroup ("id:controllers:path" lines).
func parseProcCgroup(s string) (v2, v1 string, err error) {
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 || !strings.HasPrefix(parts[2], "/") {
			return "", "", fmt.Errorf("reading /proc/self/cgroup: malformed line %q", line)
		}
		if parts[0] == "0" && parts[1] == "" {
			v2 = parts[2]
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			if c == "memory" {
				v1 = parts[2]
			}
		}
	}
	return v2, v1, sc.Err()
}

// parseLimit reads memory.max ("max" or bytes) or memory.limit_in_bytes.
func parseLimit(s string) (int64, bool, error) {
	s = strings.TrimSpace(s)
	if s == "max" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, false, fmt.Errorf("reading the cgroup memory limit: %q is not a size in bytes", s)
	}
	if n >= unlimited {
		return 0, false, nil
	}
	return n, true, nil
}

// FromCgroup sets the runtime's soft memory limit to Fraction of the
// cgroup's limit, unless GOMEMLIMIT is set or there is no limit. It
// returns the limit it set (0 for none) and what it was derived from.
func FromCgroup() (set int64, from string, err error) {
	if v := os.Getenv("GOMEMLIMIT"); v != "" {
		return 0, "GOMEMLIMIT=" + v, nil
	}
	proc, err := os.ReadFile("/proc/self/cgroup")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, "", nil // not Linux, or no /proc
	}
	if err != nil {
		return 0, "", fmt.Errorf("reading /proc/self/cgroup: %w", err)
	}
	limit, ok, err := Limit(os.DirFS("/sys/fs/cgroup"), string(proc))
	if err != nil || !ok {
		return 0, "", err
	}
	set = int64(float64(limit) * Fraction)
	debug.SetMemoryLimit(set)
	return set, fmt.Sprintf("cgroup memory limit %d bytes", limit), nil
}

// GCPercent is the gateway's GOGC when none is set. The heap is mostly
// wireguard-go's pooled 64 KiB packet buffers, which hold no pointers and
// cost the collector little, so collecting at 15 % growth instead of
// doubling keeps the peak resident set near the live heap for no
// measurable CPU. It also empties wireguard-go's sync.Pools of idle
// buffers sooner: at full load, 15 instead of 25 took gateway A's peak
// from 60-88 to 56-61 MiB in the production-shape bench; 10 held about
// the same peak but carried 10-25 % less QUIC bulk (docs/bench.md, "GOGC 15").
const GCPercent = 15

// TightenGC sets GCPercent unless GOGC is set, and reports what holds.
func TightenGC() string {
	if v := os.Getenv("GOGC"); v != "" {
		return "GOGC=" + v
	}
	debug.SetGCPercent(GCPercent)
	return fmt.Sprintf("GOGC=%d (the gateway's default)", GCPercent)
}
