package server

import (
	"bufio"
	"net"
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkIdleConnectionMemory measures what an idle, connected STOMP
// session costs: heap and goroutine stacks per connection. Client and
// server share the process, so the client is kept minimal (a bare
// net.Conn, no goroutine) and its small share is included: the figure is
// an upper bound for the broker. 2,000 connections need 4,000 descriptors;
// the soft limit is raised for the run (the hard limit here is 20,000).
func BenchmarkIdleConnectionMemory(b *testing.B) {
	const conns = 2000
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < 3*conns && lim.Max >= 3*conns {
		raised := lim
		raised.Cur = 3 * conns
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			b.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
		}
	}
	for range b.N {
		// One address opens all the connections at once: no per-address limits.
		srv := startServer(b, Config{MaxConnectionsPerIP: -1, ConnectionRatePerIP: -1})
		before := memInUse()
		clients := make([]net.Conn, 0, conns)
		connect := []byte(frame("CONNECT", "", "accept-version:1.2", "host:test", "heart-beat:0,0"))
		for range conns {
			nc, err := net.Dial("tcp", srv.addr)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := nc.Write(connect); err != nil {
				b.Fatal(err)
			}
			_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
			if line, err := bufio.NewReaderSize(nc, 16).ReadString('\n'); err != nil || line != "CONNECTED\n" {
				b.Fatalf("CONNECT: %q %v", line, err)
			}
			clients = append(clients, nc)
		}
		after := memInUse()
		b.ReportMetric(float64(after-before)/conns, "bytes/conn")
		for _, nc := range clients {
			_ = nc.Close()
		}
	}
}

// memInUse is heap in use plus goroutine stacks, after a collection.
func memInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapInuse + m.StackInuse)
}
