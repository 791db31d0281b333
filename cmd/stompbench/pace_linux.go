package main

import (
	"runtime"
	"syscall"
	"time"
)

// spinSlack is how early a short wait wakes up to spin on the clock:
// nanosleep(2) itself is often 30-80 us late on a busy machine.
const spinSlack = 60 * time.Microsecond

// preciseSleep waits until due (a time.Now reading plus d). Short waits
// use nanosleep(2), which blocks this thread on a high-resolution timer,
// then yield-spin the last spinSlack: time.Sleep below a millisecond often
// wakes a whole millisecond late (the runtime's poller waits in whole
// milliseconds), and a fixed-rate sender that is late adds its lateness
// to every latency it measures. The spin costs CPU only at high rates.
func preciseSleep(d time.Duration) {
	if d >= 2*time.Millisecond {
		time.Sleep(d)
		return
	}
	due := time.Now().Add(d)
	if d > spinSlack {
		ts := syscall.NsecToTimespec(int64(d - spinSlack))
		_ = syscall.Nanosleep(&ts, nil) // EINTR: the spin below finishes the wait
	}
	for time.Now().Before(due) {
		runtime.Gosched()
	}
}
