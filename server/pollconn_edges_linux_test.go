package server

import (
	"bufio"
	"net"
	rtmetrics "runtime/metrics"
	"strings"
	"testing"
	"time"
)

// A client that sends its last frame and closes at once puts the bytes and
// its FIN behind one readiness edge: the short read of the bytes is not
// the end, and the driver must read on to it.
func TestClientClosingRightAfterItsLastFrameIsSeen(t *testing.T) {
	for _, driver := range []string{DriverEpoll, DriverGoroutines} {
		t.Run(driver, func(t *testing.T) {
			srv := startServer(t, Config{ConnectionDriver: driver, ConnectionRatePerIP: -1})
			const n = 20
			for range n {
				nc, err := net.Dial("tcp", srv.addr)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := nc.Write([]byte(frame("CONNECT", "", "accept-version:1.2", "host:test"))); err != nil {
					t.Fatal(err)
				}
				_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
				if line, err := bufio.NewReader(nc).ReadString('\n'); err != nil || !strings.HasPrefix(line, "CONNECTED") {
					t.Fatalf("CONNECT: %q %v", line, err)
				}
				// A frame the server answers with nothing, then the FIN.
				_, _ = nc.Write([]byte(frame("SUBSCRIBE", "", "id:0", "destination:/topic/x")))
				_ = nc.Close()
			}
			open := n
			for range 300 {
				if open = srv.openConns(); open == 0 {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			if open != 0 {
				t.Errorf("%d of %d connections whose client closed are still open after 3s", open, n)
			}
		})
	}
}

// Shutdown can reach a connection between its publication in startConn
// and the driver's start: the connection must still end, once.
func TestShutdownBeforeTheEpollDriverStarts(t *testing.T) {
	srv := New(Config{ConnectionDriver: DriverEpoll})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// startConn up to its unlock, by hand.
	srv.mu.Lock()
	pc := srv.newPollConn(nc, tcpStream{nc})
	if pc == nil {
		srv.mu.Unlock()
		t.Fatal("the epoll driver did not take a plain TCP connection")
	}
	pc.counters = &srv.metrics.transports[transportTCP]
	pc.counters.open.Add(1)
	srv.conns[pc] = struct{}{}
	srv.wg.Add(1)
	srv.mu.Unlock()
	pc.session.Shutdown() // what Shutdown's tellShutdown does
	time.Sleep(100 * time.Millisecond)
	pc.start()
	ended := make(chan struct{})
	go func() { srv.wg.Wait(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Errorf("the connection never ended (parts=%d): Shutdown would wait for it forever", pc.parts.Load())
		pc.closeNow()
		<-ended
	}
	if got := (&testServer{Server: srv}).openConns(); got != 0 {
		t.Errorf("%d connections still listed", got)
	}
	srv.stopPoller()
}

func goroutinesCreated() uint64 {
	s := []rtmetrics.Sample{{Name: "/sched/goroutines-created:goroutines"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// A parked session (its client dropped; resume is on by default) keeps
// taking topic deliveries, each of which wakes its dead connection: that
// must start no goroutine.
func TestParkedSessionWakesStartNoGoroutine(t *testing.T) {
	created := map[bool]uint64{}
	for _, parked := range []bool{false, true} {
		srv := startServer(t, Config{ConnectionDriver: DriverEpoll, ConnectionRatePerIP: -1})
		if parked {
			sub := dialRaw(t, srv.addr)
			sub.connect()
			sub.send(frame("SUBSCRIBE", "", "id:0", "destination:/topic/x", "receipt:r"))
			sub.expectReceipt("r")
			_ = sub.conn.Close()
			for i := 0; srv.Broker().ParkedSessions() != 1; i++ {
				if i == 300 {
					t.Fatal("the dropped session was not parked within 3s")
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		pub := dialRaw(t, srv.addr)
		pub.connect()
		const n = 2000
		before := goroutinesCreated()
		for i := range n {
			pub.send(frame("SEND", "x", "destination:/topic/x"))
			if i%50 == 49 {
				time.Sleep(time.Millisecond) // separate wakes, as real traffic makes
			}
		}
		pub.send(frame("SEND", "x", "destination:/topic/x", "receipt:end"))
		pub.expectReceipt("end")
		created[parked] = goroutinesCreated() - before
	}
	t.Logf("goroutines created for 2000 SENDs: %d, with a parked subscriber: %d", created[false], created[true])
	if created[true] > created[false]+50 {
		t.Errorf("a parked subscriber's wakes started %d goroutines (%d without it)", created[true], created[false])
	}
}

// A read deadline only bounds the epoll driver's waits on the runtime's
// poller; one left behind (a poke's that came after its wait, or a wait's
// that passed meanwhile) must not stop the reads that never wait.
func TestStaleReadDeadlineDoesNotStopReading(t *testing.T) {
	srv := startServer(t, Config{ConnectionDriver: DriverEpoll})
	c := dialRaw(t, srv.addr)
	c.connect()
	srv.mu.Lock()
	var pc *pollConn
	for cn := range srv.conns {
		pc, _ = cn.(*pollConn)
	}
	srv.mu.Unlock()
	if pc == nil {
		t.Fatal("no connection under the epoll driver")
	}
	time.Sleep(2 * activeGrace) // quiet: back on epoll, no reader running
	_ = pc.nc.SetReadDeadline(time.Unix(1, 0))
	c.send(frame("SEND", "x", "destination:/queue/stale", "receipt:r1"))
	c.expectReceipt("r1")
}
