package procstat

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Self is the pid that means the calling process.
const Self = 0

// Field is the value of one field of process pid's /proc/PID/status (Self:
// the calling process), trimmed: "VmRSS" gives "12345 kB".
func Field(pid int, name string) (string, error) {
	path := "/proc/self/status"
	if pid != Self {
		path = fmt.Sprintf("/proc/%d/status", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading a process's status: %w", err)
	}
	return parse(string(b), name, path)
}

// parse finds field name in the text of a status file.
func parse(status, name, path string) (string, error) {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.TrimSpace(v), nil
		}
	}
	return "", fmt.Errorf("%s has no %s", path, name)
}

// Bytes is a memory field of process pid's status (VmRSS, VmHWM, …), given
// there in kB, in bytes.
func Bytes(pid int, name string) (uint64, error) {
	v, err := Field(pid, name)
	if err != nil {
		return 0, err
	}
	return kB(v, name)
}

// kB reads "12345 kB" as bytes.
func kB(v, name string) (uint64, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(v, "kB")), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s %q is not a size in kB: %w", name, v, err)
	}
	return n << 10, nil
}

// RSS is process pid's resident set, in bytes.
func RSS(pid int) (uint64, error) { return Bytes(pid, "VmRSS") }

// PeakRSS is process pid's peak resident set (VmHWM), in bytes.
func PeakRSS(pid int) (uint64, error) { return Bytes(pid, "VmHWM") }
