// Package procstat reads a process's /proc/PID/status on Linux: its
// resident set (VmRSS), peak resident set (VmHWM) and any other field, for
// the benchmarks and tests that measure what a process costs.
package procstat
