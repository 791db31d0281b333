package server

import (
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/wsadapter"
	"golang.org/x/sys/unix"
)

// pollConn is a connection under the epoll driver. Nothing runs for it
// while it is idle: a readable socket, a Poke or a deadline due starts a
// reader goroutine that reads into a pooled buffer and feeds the session
// until the socket is drained; Wake starts a writer goroutine that flushes
// the session's output and exits when there is none. Each of the two is
// started by whoever posts the first event to its mailbox, and runs the
// events posted meanwhile before it exits, so there is never more than one
// reader and one writer and no event is lost.
type pollConn struct {
	wire
	shard *pollShard      // immutable
	raw   syscall.RawConn // immutable: the socket, under its own locks
	fd    int32           // immutable: the socket's descriptor, the epoll key
	// waiting says the reader waits on the runtime's poller: post
	// interrupts it (next to fd: no padding of its own).
	waiting atomic.Bool
	ws      *wsadapter.Conn // immutable: nil on native STOMP

	reader mailbox // evRunning, evReadable, evPoke, evTimer, evWriterDone
	writer mailbox // wRunning, wWake, wTimer

	// The reader's, touched by the reader goroutine only.
	pending      []byte // read before polling began (PROXY header rest, upgrade read-ahead): fed first
	readable     bool   // the socket may have bytes (an edge not yet read to a short read)
	hangup       bool   // epoll saw the peer's end: read to it even after a short read
	poked        bool   // Session.Poked is due
	readEnded    bool
	serverClosed bool // read by finish after both sides ended

	// While bytes keep coming (active), the reader waits for more on the
	// runtime's own poller, epoll muted for the socket, until activeGrace
	// after the last bytes: a busy connection then costs what it does
	// under the goroutine driver, and returns to epoll once it goes quiet.
	active bool // reader only

	// writerEnded is touched by the writer goroutine only.
	writerEnded bool

	// Readings of srv.clock (0: none).
	lastRead  atomic.Int64 // when bytes last arrived; stored by the reader
	lastWrite atomic.Int64 // stored by the writer, read by the shard
	lastPing  atomic.Int64 // stored by the writer, read by the shard
	readDue   atomic.Int64 // when the reader must look (timeouts, flow control)
	lingerBy  atomic.Int64 // set by the writer after the last frame
	parts     atomic.Int32 // reader and writer not yet ended: the last one finishes

	// Guarded by shard.mu.
	heapAt    int32 // index in the shard's deadline heap, -1 when not in it
	due       int64 // a clock reading: when the shard looks next
	unwatched bool  // removed from the shard: nothing schedules it again
}

// The reader's and the writer's events.
const (
	evRunning    uint32 = 1 << iota // the goroutine runs (both mailboxes)
	evReadable                      // epoll: the socket is readable
	evPoke                          // Transport.Poke
	evTimer                         // a read deadline or flow-control timer is due
	evWriterDone                    // the writer sent the last frame or failed
	evHangup                        // epoll: the peer ended (RDHUP, HUP, ERR)
)

// The writer's events (evRunning is bit 0 of both).
const (
	wWake  = evReadable // Transport.Wake
	wTimer = evPoke     // a heart-beat or a WebSocket ping may be due
)

// maxReadSteps bounds one run of the reader's loop before it looks at its
// mailbox again.
const maxReadSteps = 64

// activeGrace is how long a connection whose bytes came less than this
// apart keeps its reader waiting for more, rather than going back to
// epoll: a burst or a steady stream is read as the goroutine driver reads
// it, a heart-beat every few seconds is not.
const activeGrace = 50 * time.Millisecond

// mailbox is an actor's event set plus its "running" bit.
type mailbox struct{ atomic.Uint32 }

// post adds events; it reports whether the caller must start the actor.
func (m *mailbox) post(events uint32) (start bool) {
	for {
		old := m.Load()
		if old&evRunning != 0 && old&events == events {
			return false
		}
		if m.CompareAndSwap(old, old|events|evRunning) {
			return old&evRunning == 0
		}
	}
}

// take returns the events posted since the last take, or 0 once there are
// none, the actor then stopped: a later post starts a new one.
func (m *mailbox) take() uint32 {
	for {
		old := m.Load()
		if old == evRunning {
			if m.CompareAndSwap(evRunning, 0) {
				return 0
			}
			continue
		}
		if m.CompareAndSwap(old, evRunning) {
			return old &^ evRunning
		}
	}
}

// newPollConn makes the epoll driver's connection for nc, or returns nil
// when the goroutine driver must serve it (configured so, TLS, a socket
// epoll cannot watch, a poller that cannot start). Called under s.mu.
func (s *Server) newPollConn(nc net.Conn, st stream) *pollConn {
	if s.cfg.ConnectionDriver != DriverEpoll {
		return nil
	}
	sc, ac := pollableSocket(nc)
	if sc == nil {
		return nil
	}
	ws, ok := pollableStream(st)
	if !ok {
		return nil
	}
	if s.poll == nil {
		p, err := newPoller(s.cfg.ReadBufferSize, s.cfg.Logger, s.clock)
		if err != nil {
			s.cfg.Logger.Warn("epoll driver unavailable; serving with goroutines", "err", err)
			s.cfg.ConnectionDriver = DriverGoroutines
			return nil
		}
		s.poll = p
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	fd := -1
	if err := raw.Control(func(f uintptr) { fd = int(f) }); err != nil || fd < 0 {
		return nil
	}
	shard := s.poll.shardFor(fd)
	if shard == nil {
		return nil
	}
	c := &pollConn{wire: wire{srv: s, nc: nc, stream: st}, shard: shard, raw: raw, fd: int32(fd), ws: ws, heapAt: -1}
	if ac != nil {
		c.pending, ac.pending = ac.pending, nil
	}
	if ws != nil {
		c.pending = append(c.pending, ws.Detach()...)
	}
	c.session = s.broker.NewSession(c, nc.RemoteAddr().String())
	// Ready before anyone can see it: Shutdown may close it before start.
	c.parts.Store(2)
	now := s.clock.now()
	// A connection's first bytes do not make it active: a client that
	// sends CONNECT and SUBSCRIBE and then idles is the common case.
	c.lastRead.Store(now - int64(activeGrace))
	c.lastWrite.Store(now)
	c.lastPing.Store(now)
	_ = nc.SetReadDeadline(time.Time{}) // net/http's, on an upgraded connection
	return c
}

// pollableSocket is the socket under nc when epoll can watch it: not TLS
// (crypto/tls reads ahead and keeps state the driver cannot see).
func pollableSocket(nc net.Conn) (syscall.Conn, *admittedConn) {
	ac, _ := nc.(*admittedConn)
	switch sc := socketOf(nc).(type) {
	case *net.TCPConn:
		return sc, ac
	case *net.UnixConn:
		return sc, ac
	}
	return nil, nil
}

// start watches the socket and runs the first step (the connect timeout).
func (c *pollConn) start() {
	if err := c.shard.add(c); err != nil {
		c.srv.cfg.Logger.Error("epoll driver cannot watch a connection", "session", c.session.ID(), "err", err)
		c.closeNow()
		return
	}
	c.post(evTimer)
}

// Close implements broker.Transport as conn.Close does.
func (c *pollConn) Close(reason broker.CloseReason) {
	if reason == broker.CloseSlowConsumer || reason == broker.CloseShutdown || reason == broker.CloseTakenOver {
		by := time.Now().Add(c.srv.cfg.Linger)
		c.drainBy.Store(by.UnixNano())
		_ = c.nc.SetWriteDeadline(by) // interrupts a write blocked on the peer
	}
	c.postWriter(wWake)
	c.post(evPoke)
}

// Wake implements broker.Transport; it never blocks.
func (c *pollConn) Wake() { c.postWriter(wWake) }

// Poke implements broker.Transport: the reader runs Session.Poked.
func (c *pollConn) Poke() { c.post(evPoke) }

func (c *pollConn) closeNow() {
	_ = c.nc.Close()
	c.post(evReadable) // the reader finds the socket closed and ends
}

func (c *pollConn) post(events uint32) {
	if c.reader.post(events) {
		go c.runReader()
		return
	}
	if events&(evPoke|evTimer|evWriterDone) != 0 && c.waiting.Load() {
		// The reader set its deadline before it said it waits, so this
		// one, later, interrupts the wait (awaitReadable).
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

func (c *pollConn) postWriter(events uint32) {
	if c.writer.post(events) {
		go c.runWriter()
	}
}

// runReader is the reader goroutine: it handles events until none is left.
func (c *pollConn) runReader() {
	for {
		events := c.reader.take()
		if events == 0 {
			return
		}
		if events&evReadable != 0 {
			c.readable = true
		}
		if events&evHangup != 0 {
			c.hangup = true
		}
		if events&evPoke != 0 {
			c.poked = true
		}
		if events&evWriterDone != 0 {
			c.endRead(true) // the session's last frame is out
		} else {
			c.step()
		}
		if c.readEnded {
			return // still "running": later events start no goroutine
		}
	}
}

// step is one turn of the goroutine driver's read loop, without waiting:
// where that loop would block, step arms epoll or a deadline and returns.
func (c *pollConn) step() {
	s := c.session
	for range maxReadSteps {
		poked := c.poked
		c.poked = false
		lastRead := c.srv.clock.at(c.lastRead.Load())
		read, at, err := s.Tick(time.Now(), lastRead, poked)
		if err != nil {
			c.endRead(true)
			return
		}
		if !read || !c.readable && len(c.pending) == 0 {
			if activeUntil := c.lastRead.Load() + int64(activeGrace); read && c.active && c.srv.clock.now() < activeUntil {
				c.readable = c.awaitReadable(earliest(c.srv.clock.at(activeUntil), at))
				if c.reader.Load()&^evRunning != 0 {
					return // an event ended the wait: runReader takes it, then steps again
				}
				continue
			}
			c.quiet()
			c.setReadDue(at) // a poke, at, or (when reading) epoll's next edge resumes
			return
		}
		if !at.IsZero() && !time.Now().Before(at) {
			continue // Tick's turn
		}
		if !c.readOnce() {
			return
		}
		if c.reader.Load()&^evRunning != 0 {
			break // a poke or the writer's end: runReader takes it first
		}
	}
	c.reader.post(evReadable) // more to do: this goroutine goes on after a look at its mailbox
}

// readBuffer is a read in progress: the pooled buffer, the read's result,
// and the functions RawConn.Read and wsadapter.Conn.Feed call, bound once
// per buffer rather than once per connection (an idle connection holds
// none of it).
type readBuffer struct {
	buf  []byte
	n    int
	err  error
	conn *pollConn // the connection reading, for feed
	read func(fd uintptr) bool
	feed func(payload []byte) error
}

func newReadBuffer(size int) *readBuffer {
	rb := &readBuffer{buf: make([]byte, size)}
	rb.read, rb.feed = rb.readFromFD, rb.feedPayload
	return rb
}

// readFromFD is the read of readOnce, on the descriptor under the
// socket's read lock (so a concurrent Close cannot hand the number to
// another connection meanwhile); it never waits.
func (rb *readBuffer) readFromFD(fd uintptr) bool {
	for {
		n, err := unix.Read(int(fd), rb.buf)
		if err == unix.EINTR {
			continue
		}
		rb.n, rb.err = max(n, 0), err
		return true
	}
}

// feedPayload feeds STOMP bytes to the session, counting them (the
// transport's bytes in are STOMP bytes, as the goroutine driver counts).
func (rb *readBuffer) feedPayload(p []byte) error {
	c := rb.conn
	c.counters.bytesIn.Add(uint64(len(p)))
	c.bytesIn.Add(uint64(len(p)))
	return c.session.Feed(p)
}

// readOnce reads what there is (the bytes kept from before polling first)
// into a pooled buffer and feeds it; false means the read side ended.
func (c *pollConn) readOnce() bool {
	rb := c.shard.p.readBufs.Get().(*readBuffer)
	rb.conn = c
	defer func() {
		rb.conn, rb.err = nil, nil
		c.shard.p.readBufs.Put(rb)
	}()
	buf := rb.buf
	var n int
	var err error
	if len(c.pending) > 0 {
		n = copy(buf, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
	} else {
		if err = c.raw.Read(rb.read); err == nil {
			n, err = rb.n, rb.err
		}
		switch {
		case errors.Is(err, unix.EAGAIN):
			c.readable = false
			return true
		case errors.Is(err, os.ErrDeadlineExceeded):
			// A deadline is only for awaitReadable's wait: one that outlived
			// it (it passed meanwhile, or a poke's came late) must not stop
			// this read, which never waits.
			_ = c.nc.SetReadDeadline(time.Time{})
			return true
		case err == nil && n == 0:
			err = io.EOF
		}
		// A short read drained the socket: bytes arriving after it are a new
		// edge. A full buffer may have left some.
		c.readable = n == len(buf) || c.hangup
	}
	if n > 0 {
		now := c.srv.clock.now()
		if now-c.lastRead.Swap(now) < int64(activeGrace) {
			c.activate()
		}
		var ferr error
		if c.ws != nil {
			ferr = c.ws.Feed(buf[:n], rb.feed)
		} else {
			ferr = rb.feedPayload(buf[:n])
		}
		if ferr != nil {
			c.fed(ferr)
			return false
		}
	}
	if err != nil {
		c.peerGone()
		return false
	}
	return true
}

// activate keeps the reader on the runtime's poller (until activeGrace
// after the last bytes), muting epoll for the socket.
func (c *pollConn) activate() {
	if c.active {
		return
	}
	c.active = true
	c.readDue.Store(0) // the reader keeps its own deadlines while active (step)
	_ = c.raw.Control(func(uintptr) { c.shard.mute(c) })
}

// quiet hands the socket back to epoll after an active spell: epoll
// reports bytes that came meanwhile at once.
func (c *pollConn) quiet() {
	if !c.active {
		return
	}
	c.active = false
	_ = c.nc.SetReadDeadline(time.Time{})
	_ = c.raw.Control(func(uintptr) { c.shard.unmute(c) })
}

// awaitReadable waits on the runtime's poller until the socket has bytes
// (or its end), until, or a post that needs the reader: it reports
// whether to read. The deadline is set before waiting is, and post looks
// at waiting after it posted, so either the reader sees the event before
// it waits or post's past deadline ends the wait.
func (c *pollConn) awaitReadable(until time.Time) bool {
	_ = c.nc.SetReadDeadline(until)
	c.waiting.Store(true)
	defer c.waiting.Store(false)
	if c.reader.Load()&^evRunning != 0 {
		return false // an event first
	}
	err := c.raw.Read(peekReadable)
	// Bytes, or a socket that failed or closed: the read tells which.
	return err == nil || !errors.Is(err, os.ErrDeadlineExceeded)
}

// peekReadable is RawConn.Read's function for awaitReadable: true when
// the socket has a byte (or its end, or an error) to read, without
// taking it; false makes the runtime wait for readiness.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err != unix.EINTR {
			return err != unix.EAGAIN
		}
	}
}

// fed handles an error from feeding: a WebSocket violation, the peer's
// close, or the session's end.
func (c *pollConn) fed(err error) {
	var wsErr *wsadapter.ProtocolError
	switch {
	case errors.As(err, &wsErr):
		reason, code, message := refuseFor(wsErr)
		c.session.Refuse(reason, code, message, wsErr.Reason+".")
		c.endRead(true)
	case c.ws != nil && (errors.Is(err, io.EOF) || errors.Is(err, wsadapter.ErrClosed)):
		c.peerGone()
	default:
		c.endRead(true)
	}
}

// peerGone ends the read side after the socket failed or the peer left.
func (c *pollConn) peerGone() {
	if _, closing := c.session.CloseReason(); closing {
		c.endRead(true)
		return
	}
	c.session.Abort(broker.ClosePeer)
	c.endRead(false)
}

// setReadDue records when the reader must look again (zero: only on an
// event) and schedules the connection for it and its writer's deadlines.
func (c *pollConn) setReadDue(t time.Time) {
	var due int64
	if !t.IsZero() {
		due = c.srv.clock.reading(t)
	}
	c.readDue.Store(due)
	c.reschedule()
}

// reschedule puts the connection in its shard's heap at its next deadline.
func (c *pollConn) reschedule() {
	next := c.readDue.Load()
	if wd := c.writerDue(); wd != 0 && (next == 0 || wd < next) {
		next = wd
	}
	if next != 0 {
		c.shard.schedule(c, next)
	}
}

// writerDue is when the writer may owe a heart-beat or a ping (0: never).
func (c *pollConn) writerDue() int64 {
	var due int64
	if every := c.session.HeartbeatInterval(); every > 0 {
		due = c.lastWrite.Load() + int64(every)
	}
	if every := c.pingInterval(); every > 0 {
		if d := c.pingFrom() + int64(every); due == 0 || d < due {
			due = d
		}
	}
	return due
}

// pingFrom is when the ping interval counts from: the last ping or the
// last bytes heard, whichever is later (a client heard from recently need
// not be asked whether it is there).
func (c *pollConn) pingFrom() int64 { return max(c.lastPing.Load(), c.lastRead.Load()) }

// deadline is called by the shard when the connection's time came: it
// starts whichever side has work due and schedules the rest again.
func (c *pollConn) deadline(now int64) {
	var next int64
	if rd := c.readDue.Load(); rd != 0 {
		if rd <= now {
			c.post(evTimer) // the reader schedules again when done
		} else {
			next = rd
		}
	}
	if wd := c.writerDue(); wd != 0 {
		if wd <= now {
			c.postWriter(wTimer) // likewise the writer
		} else if next == 0 || wd < next {
			next = wd
		}
	}
	if next != 0 {
		c.shard.schedule(c, next)
	}
}

// endRead ends the read side: the session is released and the socket is
// no longer watched; serverClosed says the server ended the session (the
// peer may still be sending: linger before closing).
func (c *pollConn) endRead(serverClosed bool) {
	c.readEnded, c.serverClosed = true, serverClosed
	_ = c.raw.Control(func(uintptr) { c.shard.unwatch(c) })
	c.shard.forget(c)
	c.readDue.Store(0)
	c.session.Release()
	c.partDone()
}

// partDone is called once by the reader and once by the writer; the last
// one closes the connection.
func (c *pollConn) partDone() {
	if c.parts.Add(-1) != 0 {
		return
	}
	if c.serverClosed {
		by := time.Now().Add(c.srv.cfg.Linger)
		if set := c.lingerBy.Load(); set != 0 {
			by = c.srv.clock.at(set)
		}
		c.discardUntil(by)
	}
	_ = c.nc.Close()
	reason, _ := c.session.CloseReason()
	c.srv.cfg.Logger.Debug("connection closed", "session", c.session.ID(), "remote", c.nc.RemoteAddr().String(), "reason", reason.String())
	c.srv.endConn(c)
}

// runWriter is the writer goroutine: it flushes until nothing is posted.
func (c *pollConn) runWriter() {
	b := c.shard.p.writeBufs.Get().(*broker.OutputBatch)
	for {
		events := c.writer.take()
		if events == 0 {
			break
		}
		c.flush(b, events&wTimer != 0)
		if c.writerEnded {
			break // and stays "running": later wakes start no goroutine
		}
	}
	c.shard.p.writeBufs.Put(b) // Done let go of its bodies and of a burst's buffers
}

// flush writes the session's output; on a timer, also the heart-beat or
// the ping that is due.
func (c *pollConn) flush(b *broker.OutputBatch, timer bool) {
	closing := c.session.Output(b)
	if timer {
		now := c.srv.clock.now()
		if every := c.pingInterval(); every > 0 && now >= c.pingFrom()+int64(every) {
			c.lastPing.Store(now)
			if err := c.ping(); err != nil && !errors.Is(err, wsadapter.ErrClosed) {
				b.Done()
				c.writeFailed()
				return
			}
		}
		if every := c.session.HeartbeatInterval(); every > 0 && b.Len() == 0 && now >= c.lastWrite.Load()+int64(every) {
			c.session.WriterIdle() // silent for an interval: keep no buffers
			b.AppendHeartbeat()    // STOMP 1.2: a heart-beat is an EOL
			c.srv.metrics.heartbeatsSent.Add(1)
		}
	}
	if n := b.Len(); n > 0 {
		_ = c.nc.SetWriteDeadline(c.writeDeadline())
		if err := c.stream.WriteBatch(b); err != nil {
			b.Done()
			c.writeFailed()
			return
		}
		c.counters.bytesOut.Add(uint64(n))
		c.bytesOut.Add(uint64(n))
		c.lastWrite.Store(c.srv.clock.now())
	}
	b.Done() // its bodies are let go of before any linger
	if closing {
		reason, _ := c.session.CloseReason()
		c.stream.Goodbye(reason)
		if tc, ok := c.nc.(interface{ CloseWrite() error }); ok {
			_ = tc.CloseWrite()
		}
		c.lingerBy.Store(c.srv.clock.now() + int64(c.srv.cfg.Linger))
		c.endWrite()
		return
	}
	if timer {
		c.reschedule()
	}
}

// writeFailed ends a connection whose peer does not take our bytes.
func (c *pollConn) writeFailed() {
	c.session.Abort(broker.ClosePeer)
	_ = c.nc.Close()
	c.endWrite()
}

func (c *pollConn) endWrite() {
	c.writerEnded = true
	c.post(evWriterDone)
	c.partDone()
}
