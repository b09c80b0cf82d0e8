package kubetest

import "syscall"

// sysProcAttr makes the kernel kill a server when the test process dies,
// however it dies (a panic, a timeout, SIGKILL), so none outlives its test.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
