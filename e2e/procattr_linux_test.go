//go:build e2e

package e2e

import "syscall"

// childProcAttr makes the kernel kill a child process when the test process
// dies (a panic or a go test -timeout), so no broker or Python process is
// orphaned whatever happens.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
