package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// idleReadSize is the read buffer of an idle connection: it only ever
// reads CONNECTED, a RECEIPT and heart-beats.
const idleReadSize = 512

// fdSlack is the descriptors the process needs besides its connections.
const fdSlack = 64

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// runIdle opens N connections with heart-beats and one subscription each,
// holds them, and measures the broker's CPU meanwhile and its memory at
// the end.
func (r *runner) runIdle() error {
	cfg := r.cfg
	if err := raiseNoFile(uint64(cfg.Connections) + fdSlack); err != nil {
		return err
	}
	pid := cfg.BrokerPID
	var before int64
	if pid > 0 {
		var err error
		if before, err = readRSS(pid); err != nil {
			return err
		}
	}
	r.heartbeats(cfg.heartBeat.Send)
	start := time.Now()
	work := make(chan struct{})
	go func() {
		defer close(work)
		for range cfg.Connections {
			select {
			case work <- struct{}{}:
			case <-r.ctx.Done():
				return
			}
		}
	}()
	r.goAll(min(cfg.Connections, 64), func(int) error {
		for range work {
			c, _, err := r.open(idleReadSize, cfg.heartBeat, nil)
			if err == nil {
				err = c.subscribe(r.ctx, cfg.Destination, "auto", 0, true)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if r.failed() {
		return r.cause()
	}
	elapsed := time.Since(start)
	r.mu.Lock()
	r.res.Connections = len(r.conns)
	r.mu.Unlock()
	r.res.ConnectRate = float64(r.res.Connections) / elapsed.Seconds()
	var cpu0 int64
	if pid > 0 {
		var err error
		if cpu0, err = readCPUTicks(pid); err != nil {
			return err
		}
	}
	held := time.Now()
	hold := time.NewTimer(cfg.Duration)
	defer hold.Stop()
	select {
	case <-hold.C:
	case <-r.ctx.Done():
		return fmt.Errorf("holding %d connections: %w", r.res.Connections, r.cause())
	}
	if pid > 0 {
		cpu1, err := readCPUTicks(pid)
		if err != nil {
			return err
		}
		pct := float64(cpu1-cpu0) / clockTicks / time.Since(held).Seconds() * 100
		r.res.CPUPct = &pct
		// Read at the end of the hold: what an idle connection costs once
		// the broker has settled, not the garbage of opening them.
		after, err := settledRSS(pid)
		if err != nil {
			return err
		}
		perConn := float64(after-before) / float64(r.res.Connections)
		r.res.RSSBefore, r.res.RSSAfter, r.res.RSSPerConn = before, after, &perConn
	}
	return nil
}

// raiseNoFile raises the soft RLIMIT_NOFILE to need, within the hard
// limit, and fails if need does not fit.
func raiseNoFile(need uint64) error {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	if lim.Cur >= need {
		return nil
	}
	if lim.Max < need {
		return fmt.Errorf("-connections needs %d open files, the hard limit (RLIMIT_NOFILE) is %d: ask for at most %d connections", need, lim.Max, lim.Max-min(lim.Max, fdSlack))
	}
	lim.Cur = need
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", need, err)
	}
	return nil
}

// readRSS returns VmRSS of process pid, in bytes.
func readRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("broker RSS: %w", err)
	}
	for line := range bytes.Lines(b) {
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			break
		}
		kb, err := strconv.ParseInt(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("broker RSS: %w", err)
		}
		return kb << 10, nil
	}
	return 0, fmt.Errorf("broker RSS: no VmRSS in /proc/%d/status", pid)
}

// settledRSS samples RSS until two samples 250 ms apart are within 1%
// (at most 5 s): the broker may still be growing buffers just after the
// last connection opened.
func settledRSS(pid int) (int64, error) {
	prev, err := readRSS(pid)
	if err != nil {
		return 0, err
	}
	for range 20 {
		time.Sleep(250 * time.Millisecond)
		cur, err := readRSS(pid)
		if err != nil {
			return 0, err
		}
		if d := cur - prev; d < cur/100 && -d < cur/100 {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// readCPUTicks returns utime+stime of process pid, in clock ticks.
func readCPUTicks(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("broker CPU: %w", err)
	}
	// The command name (field 2) may hold spaces: count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("broker CPU: malformed /proc stat")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	if len(f) < 13 {
		return 0, errors.New("broker CPU: short /proc stat")
	}
	utime, err1 := strconv.ParseInt(string(f[11]), 10, 64)
	stime, err2 := strconv.ParseInt(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("broker CPU: %w", err)
	}
	return utime + stime, nil
}
