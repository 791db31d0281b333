//go:build !linux

package main

import "time"

// preciseSleep waits d (time.Sleep: nanosleep is used on Linux only).
func preciseSleep(d time.Duration) { time.Sleep(d) }
