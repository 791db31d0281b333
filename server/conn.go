package server

import (
	"crypto/tls"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/wsadapter"
)

// wire is what both connection drivers (the goroutine pair here, the
// epoll driver of pollconn_linux.go) keep of one connection.
type wire struct {
	srv     *Server         // immutable
	nc      net.Conn        // immutable: the socket, for deadlines and closing
	stream  stream          // immutable: STOMP bytes over nc (TCP or WebSocket)
	session *broker.Session // immutable after the driver made it
	// counters (immutable after startConn) are this connection's transport's.
	counters *transportCounters
	// kind and accepted (immutable after startConn) are the transport and
	// when the connection was accepted, for the admin API.
	kind     transport
	accepted time.Time
	// bytesIn and bytesOut count this connection's STOMP bytes (the admin
	// API), where counters count its transport's.
	bytesIn, bytesOut atomic.Uint64
	// drainBy (unix ns, 0 = unset) caps write deadlines once shutdown has
	// begun, so a peer that does not read cannot hold shutdown up for a
	// whole WriteTimeout.
	drainBy atomic.Int64
	// pinger (immutable after startConn) writes the WebSocket pings: set
	// on a WebSocket connection when Config.WebSocketPingInterval is.
	pinger interface{ WritePing() error }
}

func (w *wire) base() *wire { return w }

// conn drives one connection with two goroutines: serve runs the read
// loop on the accepting goroutine's child and owns a writer goroutine,
// which it joins before returning. It serves what the epoll driver cannot
// (TLS, other systems) and everything when Config.ConnectionDriver says so.
type conn struct {
	wire
	wake    chan struct{} // capacity 1: "output pending"
	written chan struct{} // closed when the writer has exited
	// endReadBy (unix ns, 0 = unset) is set by the writer once the session's
	// last frame is out: the read loop must not wait past it.
	endReadBy atomic.Int64
	// poked is set by Poke (any goroutine) and cleared by the read loop,
	// which then runs Session.Poked.
	poked atomic.Bool
	// pokes (capacity 1) is signalled by Poke and Close too: it wakes a
	// read loop that stopped reading because the session is blocked.
	pokes chan struct{}
	// lastRead (read loop only) is when bytes last arrived; read deadlines
	// count from it.
	lastRead time.Time
	// heard (a reading of srv.clock) is lastRead for the writer: pings
	// count from it.
	heard atomic.Int64
}

// closeNow closes the socket at once (Shutdown past its deadline); the
// loops see it fail and end.
func (c *conn) closeNow() { _ = c.nc.Close() }

func newConn(s *Server, nc net.Conn, st stream) *conn {
	c := &conn{wire: wire{srv: s, nc: nc, stream: st}, wake: make(chan struct{}, 1), pokes: make(chan struct{}, 1), written: make(chan struct{})}
	c.session = s.broker.NewSession(c, nc.RemoteAddr().String())
	return c
}

// Close implements broker.Transport: the writer flushes the session's last
// output and closes. A peer that is not reading, or a server going away,
// gets Linger for that flush rather than WriteTimeout, interrupting a write
// already blocked on the peer.
func (c *conn) Close(reason broker.CloseReason) {
	if reason == broker.CloseSlowConsumer || reason == broker.CloseShutdown || reason == broker.CloseTakenOver {
		by := time.Now().Add(c.srv.cfg.Linger)
		c.drainBy.Store(by.UnixNano())
		_ = c.nc.SetWriteDeadline(by)
	}
	c.Wake()
	c.signalPoke() // a read loop paused by flow control sees the end
}

// Wake implements broker.Transport; it never blocks.
func (c *conn) Wake() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Poke implements broker.Transport: it interrupts a read in progress with
// a deadline in the past, so the read loop runs Session.Poked. The flag is
// set before the deadline and the read loop sets its deadline before it
// looks at the flag, so no poke is lost between the two; a stale past
// deadline only makes the read loop look again (readTimedOut).
func (c *conn) Poke() {
	c.poked.Store(true)
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	c.signalPoke()
}

func (c *conn) signalPoke() {
	select {
	case c.pokes <- struct{}{}:
	default:
	}
}

func (c *conn) serve() {
	go c.writeLoop()
	serverClosed := c.readLoop()
	c.session.Release()
	<-c.written
	if serverClosed {
		c.linger()
	}
	_ = c.nc.Close()
	reason, _ := c.session.CloseReason()
	c.srv.cfg.Logger.Debug("connection closed", "session", c.session.ID(), "remote", c.nc.RemoteAddr().String(), "reason", reason.String())
}

// readLoop feeds the session until it ends or the peer goes. It reports
// whether the server ended the session (so the peer may still be sending).
func (c *conn) readLoop() (serverClosed bool) {
	var buf []byte
	c.lastRead = time.Now()
	c.heard.Store(c.srv.clock.reading(c.lastRead))
	for {
		read, at, err := c.session.Tick(time.Now(), c.lastRead, c.poked.Swap(false))
		if err != nil {
			return true
		}
		if !read {
			if reason, _ := c.session.Blocked(); reason != broker.NotFull {
				buf = nil // blocked for a while, maybe: do not pin the buffer meanwhile
			}
			if !c.waitPaused(at) {
				return true
			}
			c.poked.Store(true) // woken by a poke or at: Tick runs the session's work
			continue
		}
		c.setReadDeadline(at)
		if c.poked.Load() || !at.IsZero() && !time.Now().Before(at) {
			continue // Tick's turn
		}
		if buf == nil {
			buf = make([]byte, c.srv.cfg.ReadBufferSize)
		}
		n, err := c.stream.Read(buf)
		if n > 0 || err == nil {
			c.lastRead = time.Now() // n == 0 without error: a WebSocket control frame (a pong), alive too
			c.heard.Store(c.srv.clock.reading(c.lastRead))
		}
		if n > 0 {
			c.counters.bytesIn.Add(uint64(n))
			c.bytesIn.Add(uint64(n))
			if c.session.Feed(buf[:n]) != nil {
				return true
			}
		}
		if err == nil {
			continue
		}
		var wsErr *wsadapter.ProtocolError
		if errors.As(err, &wsErr) {
			reason, code, message := refuseFor(wsErr)
			c.session.Refuse(reason, code, message, wsErr.Reason+".")
			return true
		}
		if _, closing := c.session.CloseReason(); closing {
			return true // the writer set a deadline to end this read
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if c.handshakeBroken() {
				c.session.Expire() // crypto/tls keeps the error: a retry would spin
				return true
			}
			continue // a poke's interruption or the read deadline: Tick tells which
		}
		c.session.Abort(broker.ClosePeer)
		return false
	}
}

// writeLoop flushes the session's output when woken, sends heart-beats
// when idle for the negotiated interval, and on close shuts the write side
// after the last frame.
func (c *conn) writeLoop() {
	defer close(c.written)
	var batch broker.OutputBatch
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	lastWrite := time.Now()
	lastPing := lastWrite
	for {
		// One timer serves the STOMP heart-beat and the WebSocket ping:
		// it is set for whichever is due first.
		interval, pingEvery := c.session.HeartbeatInterval(), c.pingInterval()
		wait := time.Duration(-1)
		if interval > 0 {
			wait = max(0, interval-time.Since(lastWrite))
		}
		if pingEvery > 0 {
			if w := max(0, pingEvery-time.Since(c.pingFrom(lastPing))); wait < 0 || w < wait {
				wait = w
			}
		}
		var tick <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tick = timer.C
		}
		beat := false
		select {
		case <-c.wake:
		case <-tick:
			now := time.Now()
			beat = interval > 0 && !now.Before(lastWrite.Add(interval))
			if pingEvery > 0 && !now.Before(c.pingFrom(lastPing).Add(pingEvery)) {
				lastPing = now
				if err := c.ping(); err != nil && !errors.Is(err, wsadapter.ErrClosed) {
					c.session.Abort(broker.ClosePeer)
					_ = c.nc.Close() // unblocks the read loop
					return
				}
			}
		}
		closing := c.session.Output(&batch)
		if batch.Len() == 0 && beat {
			c.session.WriterIdle()  // silent for an interval: keep no buffers
			batch.AppendHeartbeat() // STOMP 1.2: a heart-beat is an EOL
			c.srv.metrics.heartbeatsSent.Add(1)
		}
		if n := batch.Len(); n > 0 {
			_ = c.nc.SetWriteDeadline(c.writeDeadline())
			if err := c.stream.WriteBatch(&batch); err != nil {
				c.session.Abort(broker.ClosePeer)
				_ = c.nc.Close() // unblocks the read loop
				return
			}
			c.counters.bytesOut.Add(uint64(n))
			c.bytesOut.Add(uint64(n))
			lastWrite = time.Now()
		}
		// Borrowed bodies are let go of; a quiet connection does not pin a
		// burst's buffers (a busy one keeps them).
		batch.Done()
		if closing {
			reason, _ := c.session.CloseReason()
			c.stream.Goodbye(reason)
			if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
				_ = tc.CloseWrite()
			}
			// End a read loop still waiting on the peer.
			by := time.Now().Add(c.srv.cfg.Linger)
			c.endReadBy.Store(by.UnixNano())
			_ = c.nc.SetReadDeadline(by)
			return
		}
	}
}

// pingFrom is when the ping interval counts from: the last ping or the
// last bytes heard, whichever is later (a client heard from recently need
// not be asked whether it is there).
func (c *conn) pingFrom(lastPing time.Time) time.Time {
	if heard := c.srv.clock.at(c.heard.Load()); heard.After(lastPing) {
		return heard
	}
	return lastPing
}

// waitPaused waits, without reading, while flow control has the session
// blocked: for a poke (room freed, or the connection closing), the
// session's next timer (wakeAt; zero: none) or the writer's exit. It
// reports false when the connection is over.
func (c *conn) waitPaused(wakeAt time.Time) bool {
	if c.poked.Swap(false) {
		return true
	}
	var timeout <-chan time.Time
	if !wakeAt.IsZero() {
		t := time.NewTimer(time.Until(wakeAt))
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-c.pokes:
	case <-timeout:
	case <-c.written:
		return false
	}
	c.poked.Store(false)
	return true
}

// setReadDeadline applies the session's next deadline (at; zero: none),
// never extending a deadline the writer set to end reading. The writer
// stores endReadBy before setting its deadline, so checking after ours
// means whichever ran last leaves the earlier deadline in force.
func (c *conn) setReadDeadline(at time.Time) {
	_ = c.nc.SetReadDeadline(at)
	if by := c.endReadBy.Load(); by != 0 && (at.IsZero() || by < at.UnixNano()) {
		_ = c.nc.SetReadDeadline(time.Unix(0, by))
	}
}

// handshakeBroken reports whether the connection is TLS whose handshake
// did not complete: crypto/tls keeps a handshake's error for good, so an
// interrupted handshake can only end the connection (retrying would spin).
func (c *conn) handshakeBroken() bool {
	tc, ok := c.nc.(*tls.Conn)
	return ok && !tc.ConnectionState().HandshakeComplete
}

// linger discards what the peer still sends for a moment, so closing with
// unread data does not reset the connection before it has read our last
// frame.
func (c *conn) linger() {
	by := time.Now().Add(c.srv.cfg.Linger)
	if set := c.endReadBy.Load(); set != 0 {
		by = time.Unix(0, set) // the writer started the linger when it finished
	}
	c.discardUntil(by)
}

// discardUntil reads and drops what the peer sends until by or the end
// (the deadline bounds it). A deadline that ends a read before by is a
// late poke's: by again, a few times at most.
func (c *wire) discardUntil(by time.Time) {
	_ = c.nc.SetReadDeadline(by)
	buf := make([]byte, 512)
	for early := 0; ; {
		_, err := c.nc.Read(buf)
		if err == nil {
			continue
		}
		if early++; early > 3 || !errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(by) {
			return
		}
		_ = c.nc.SetReadDeadline(by)
	}
}

// writeDeadline is the deadline for the next write: WriteTimeout from now,
// or sooner once shutdown has begun.
func (c *wire) writeDeadline() time.Time {
	deadline := time.Now().Add(c.srv.cfg.WriteTimeout)
	if by := c.drainBy.Load(); by != 0 && by < deadline.UnixNano() {
		return time.Unix(0, by)
	}
	return deadline
}
