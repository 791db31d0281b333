//go:build e2e && !linux

package e2e

import "syscall"

// childProcAttr: only Linux can tie a child's life to its parent's; elsewhere
// the tests' cleanups kill what they started.
func childProcAttr() *syscall.SysProcAttr { return nil }
