// Package memlimit gives the Go runtime a soft memory limit (GOMEMLIMIT)
// from the container's cgroup memory limit when none was set, so that the
// garbage collector works harder near the limit instead of the kernel
// killing the process.
package memlimit
