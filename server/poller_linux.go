package server

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/broker"
	"golang.org/x/sys/unix"
)

// poller is the epoll driver's engine: one shard per CPU, each an epoll
// instance watched by one goroutine that also keeps the deadlines of its
// connections (heart-beats to send, silent clients to expire, flow-control
// retries) in one heap. A readable socket or a deadline due hands the
// connection to a short-lived goroutine (pollConn); the shard itself never
// reads, writes or runs the broker, so one slow connection cannot hold up
// the others.
type poller struct {
	shards []*pollShard // immutable
	// readBufs holds the read buffers (*readBuffer of
	// Config.ReadBufferSize): a connection takes one only while it reads.
	readBufs sync.Pool
	// writeBufs holds the writers' batches (*broker.OutputBatch) between
	// flushes: a connection has one only while it writes.
	writeBufs sync.Pool
	logger    *slog.Logger
	clock     clock          // the server's: deadlines are its readings
	done      sync.WaitGroup // one per shard goroutine
}

// pollShard is one epoll instance, its goroutine and its deadline heap.
type pollShard struct {
	p      *poller // immutable
	epfd   int     // immutable
	wakeFd int     // immutable: an eventfd in the set, to wake the wait early

	mu      sync.Mutex
	conns   map[int32]*pollConn // guarded by mu: by socket descriptor
	due     deadlineHeap        // guarded by mu
	closing bool                // guarded by mu
	// sleepUntil (a clock reading) is when the shard's wait ends by itself
	// (math.MaxInt64: no deadline); an earlier deadline wakes it.
	sleepUntil atomic.Int64
}

// pollEvents is how many readiness events one wait returns at most.
const pollEvents = 256

// newPoller starts the shards.
func newPoller(readBufferSize int, logger *slog.Logger, k clock) (*poller, error) {
	p := &poller{logger: logger, clock: k}
	p.readBufs.New = func() any { return newReadBuffer(readBufferSize) }
	p.writeBufs.New = func() any { return new(broker.OutputBatch) }
	n := max(1, runtime.GOMAXPROCS(0))
	for range n {
		sh, err := newPollShard(p)
		if err != nil {
			p.stop()
			return nil, err
		}
		p.shards = append(p.shards, sh)
	}
	for _, sh := range p.shards {
		p.done.Add(1)
		go sh.run()
	}
	return p, nil
}

func newPollShard(p *poller) (*pollShard, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("server: epoll_create1: %w", err)
	}
	wakeFd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, fmt.Errorf("server: eventfd: %w", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakeFd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakeFd, &ev); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wakeFd)
		return nil, fmt.Errorf("server: epoll_ctl eventfd: %w", err)
	}
	sh := &pollShard{p: p, epfd: epfd, wakeFd: wakeFd, conns: make(map[int32]*pollConn)}
	sh.sleepUntil.Store(math.MaxInt64)
	return sh, nil
}

// shardFor spreads connections over the shards by descriptor; nil when
// that shard has stopped (its epoll failed): the goroutine driver serves
// the connection then.
func (p *poller) shardFor(fd int) *pollShard {
	sh := p.shards[fd%len(p.shards)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closing {
		return nil
	}
	return sh
}

// stop ends the shard goroutines; every connection must be gone (Shutdown
// waits for them first).
func (p *poller) stop() {
	for _, sh := range p.shards {
		sh.mu.Lock()
		sh.closing = true
		sh.mu.Unlock()
		sh.wake()
	}
	p.done.Wait()
	for _, sh := range p.shards {
		_ = unix.Close(sh.epfd)
		_ = unix.Close(sh.wakeFd)
	}
}

// add watches c's socket, edge-triggered: epoll reports new bytes once,
// and the reader reads until a read comes back short (the socket is
// drained then), so it never has to re-arm.
func (sh *pollShard) add(c *pollConn) error {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.closing {
		return errors.New("server: epoll shard stopped")
	}
	if c.unwatched {
		return nil // ended before it was watched (Shutdown): nothing to watch
	}
	var addErr error
	// Under the socket's lock: a socket closed meanwhile is not added
	// under a number that may be another's by now.
	if err := c.raw.Control(func(uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: c.fd}
		addErr = unix.EpollCtl(sh.epfd, unix.EPOLL_CTL_ADD, int(c.fd), &ev)
	}); err != nil {
		return fmt.Errorf("server: epoll_ctl add: %w", err)
	}
	if addErr != nil {
		return fmt.Errorf("server: epoll_ctl add: %w", addErr)
	}
	sh.conns[c.fd] = c
	return nil
}

// mute stops epoll reporting c's bytes while its reader waits for them
// on the runtime's poller (the caller holds the socket's lock).
func (sh *pollShard) mute(c *pollConn) {
	ev := unix.EpollEvent{Events: unix.EPOLLET, Fd: c.fd}
	_ = unix.EpollCtl(sh.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
}

// unmute has epoll report c's bytes again; bytes already there are
// reported at once (the caller holds the socket's lock).
func (sh *pollShard) unmute(c *pollConn) {
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET, Fd: c.fd}
	_ = unix.EpollCtl(sh.epfd, unix.EPOLL_CTL_MOD, int(c.fd), &ev)
}

// unwatch takes c's socket out of the epoll set; the caller holds the
// socket's lock (RawConn.Control), so the descriptor is still c's.
func (sh *pollShard) unwatch(c *pollConn) {
	_ = unix.EpollCtl(sh.epfd, unix.EPOLL_CTL_DEL, int(c.fd), nil)
}

// forget drops c from the shard for good: no event or deadline reaches it
// after this.
func (sh *pollShard) forget(c *pollConn) {
	sh.mu.Lock()
	if sh.conns[c.fd] == c {
		delete(sh.conns, c.fd) // unless a new socket has the number now
	}
	sh.due.remove(c)
	c.unwatched = true
	sh.mu.Unlock()
}

// schedule makes sure the shard looks at c at the latest at due (a clock
// reading): an earlier entry stays, since every look checks what is really due
// and schedules the rest again.
func (sh *pollShard) schedule(c *pollConn, due int64) {
	sh.mu.Lock()
	if sh.closing || c.unwatched {
		sh.mu.Unlock()
		return
	}
	sh.due.set(c, due)
	sh.mu.Unlock()
	if due < sh.sleepUntil.Load() {
		sh.wake()
	}
}

// wake ends the shard's current wait early.
func (sh *pollShard) wake() {
	one := [8]byte{1}
	for {
		_, err := unix.Write(sh.wakeFd, one[:])
		if err != unix.EINTR {
			return // EAGAIN: the counter is already set, the wait ends anyway
		}
	}
}

// run waits for readiness and deadlines until stop.
func (sh *pollShard) run() {
	defer sh.p.done.Done()
	events := make([]unix.EpollEvent, pollEvents)
	var due []*pollConn
	for {
		timeout := sh.timeout()
		n, err := unix.EpollWait(sh.epfd, events, timeout)
		// Awake: the heap is looked at again before the next wait, so
		// schedule need not wake the shard until then.
		sh.sleepUntil.Store(math.MinInt64)
		if err != nil && !errors.Is(err, unix.EINTR) {
			// EBADF or EINVAL: the set is broken for good. Every connection
			// of the shard is ended so that none hangs unserved.
			sh.p.logger.Error("epoll wait failed; ending this shard's connections", "err", err)
			sh.fail()
			return
		}
		for i := range max(n, 0) {
			fd := events[i].Fd
			if int(fd) == sh.wakeFd {
				var b [8]byte
				_, _ = unix.Read(sh.wakeFd, b[:])
				continue
			}
			sh.mu.Lock()
			c := sh.conns[fd]
			sh.mu.Unlock()
			if c != nil {
				ev := evReadable
				if events[i].Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
					ev |= evHangup // the end may sit behind the last bytes: read to it
				}
				c.post(ev)
			}
		}
		sh.mu.Lock()
		if sh.closing {
			sh.mu.Unlock()
			return
		}
		now := sh.p.clock.now()
		due = sh.due.popDue(now, due[:0])
		sh.mu.Unlock()
		for i, c := range due {
			c.deadline(now)
			due[i] = nil
		}
	}
}

// timeout is the wait's timeout in milliseconds (-1: none), rounded up so
// the wait does not end just before the deadline and spin; it records the
// wake-up time for schedule.
func (sh *pollShard) timeout() int {
	sh.mu.Lock()
	next, ok := sh.due.peek()
	// Stored under mu: a schedule after this sees it and wakes the wait,
	// one before it is in the heap already.
	if ok {
		sh.sleepUntil.Store(next)
	} else {
		sh.sleepUntil.Store(math.MaxInt64)
	}
	sh.mu.Unlock()
	if !ok {
		return -1
	}
	wait := next - sh.p.clock.now()
	if wait <= 0 {
		return 0
	}
	return int(min((wait+int64(time.Millisecond)-1)/int64(time.Millisecond), math.MaxInt32))
}

// fail ends every connection of a shard whose epoll broke.
func (sh *pollShard) fail() {
	sh.mu.Lock()
	sh.closing = true // new connections go to the goroutine driver
	conns := make([]*pollConn, 0, len(sh.conns))
	for _, c := range sh.conns {
		conns = append(conns, c)
	}
	sh.mu.Unlock()
	for _, c := range conns {
		c.closeNow()
	}
}

// stopPoller stops the epoll driver once Shutdown has seen every
// connection end.
func (s *Server) stopPoller() {
	s.mu.Lock()
	p := s.poll
	s.poll = nil
	s.mu.Unlock()
	if p != nil {
		p.stop()
	}
}
