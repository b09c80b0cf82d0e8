//go:build !linux

package kubetest

import "syscall"

// sysProcAttr: without Pdeathsig, servers of a test process that dies without
// running its cleanups outlive it.
func sysProcAttr() *syscall.SysProcAttr { return nil }
