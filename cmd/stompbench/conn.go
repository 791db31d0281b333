package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/frames"
)

// errBrokerError ends a reader that got an ERROR frame; the conn's err
// wraps it with the frame's message.
var errBrokerError = errors.New("broker sent ERROR")

// errClosedByBroker is a connection that ended before we disconnected.
var errClosedByBroker = errors.New("connection closed by the broker")

// The header names every message of stompbench carries.
const (
	hdrProducer = "stompbench-producer"
	hdrSeq      = "stompbench-seq"
	hdrSentAt   = "stompbench-ts" // intended send time, ns since the run's base
)

// The receipt ids of the final DISCONNECT and of SUBSCRIBE.
const (
	disconnectReceipt = "stompbench-bye"
	subscribeReceipt  = "stompbench-sub"
)

// conn is one STOMP 1.2 connection of the generator: the goroutine that
// owns it writes (producers batch frames in out and flush), one reader
// goroutine parses what the broker sends and calls the role's callbacks,
// which may append frames (ACKs) that the reader flushes after each chunk.
type conn struct {
	nc        net.Conn // immutable
	webSocket bool     // immutable
	r         io.Reader
	readBuf   []byte         // reader goroutine only
	parser    *frames.Parser // reader goroutine only

	wmu sync.Mutex
	out []byte // guarded by wmu; with webSocket its first wsRoom bytes are the frame header's room

	// Callbacks, set before the reader starts, called from it. A nil
	// onMessage makes a MESSAGE a protocol error; onReceipt sees every
	// RECEIPT but the DISCONNECT's.
	onMessage func(f *frames.Frame) error
	onReceipt func(id []byte) error
	onEnd     func(err error) // the reader's end: nil once we asked for it
	pending   bool            // reader only: a callback appended to out; flush after the chunk

	connected  chan *frames.Frame // gets the CONNECTED frame (owned copy)
	bye        chan struct{}      // closed on the DISCONNECT's RECEIPT
	subscribed chan struct{}      // closed on the SUBSCRIBE's RECEIPT
	done       chan struct{}      // closed when the reader ends
	err        error              // the reader's end, read after done

	mu      sync.Mutex
	closing bool // guarded by mu: we sent DISCONNECT or closed it ourselves

	// beatEvery is how often we must send heart-beats (ns), negotiated in
	// CONNECTED; 0: never.
	beatEvery atomic.Int64
}

// dialOptions are what every connection of a run shares.
type dialOptions struct {
	cfg      *Config
	readSize int // read buffer bytes: small for idle connections
	// setup, when set, installs the role's callbacks before the reader
	// starts (they are read without a lock).
	setup func(c *conn)
}

// dial connects and starts the reader; it does not send CONNECT.
func dial(ctx context.Context, o dialOptions) (*conn, error) {
	c := &conn{
		readBuf:    make([]byte, o.readSize),
		parser:     frames.NewParser(frames.Limits{MaxBody: 64 << 20, MaxHeaderBytes: 1 << 20}),
		connected:  make(chan *frames.Frame, 1),
		bye:        make(chan struct{}),
		subscribed: make(chan struct{}),
		done:       make(chan struct{}),
	}
	switch o.cfg.transport {
	case "ws":
		// The handshake's buffers must hold the HTTP response's headers.
		d := ws.Dialer{Protocols: []string{"v12.stomp"}, ReadBufferSize: 4096, WriteBufferSize: 1024}
		nc, br, hs, err := d.Dial(ctx, o.cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("websocket dial %s: %w", o.cfg.URL, err)
		}
		if hs.Protocol != "v12.stomp" {
			_ = nc.Close()
			return nil, fmt.Errorf("websocket dial %s: subprotocol %q, want v12.stomp", o.cfg.URL, hs.Protocol)
		}
		if br == nil {
			br = bufio.NewReaderSize(nc, max(o.readSize, 512))
		}
		c.nc, c.webSocket = nc, true
		c.r = &wsReader{br: br, c: c}
		c.out = make([]byte, wsRoom, wsRoom+1024)
	default:
		var d net.Dialer
		nc, err := d.DialContext(ctx, "tcp", o.cfg.address)
		if err != nil {
			return nil, fmt.Errorf("dial %s: %w", o.cfg.address, err)
		}
		c.nc, c.r = nc, nc
		c.out = make([]byte, 0, 1024)
	}
	if o.setup != nil {
		o.setup(c)
	}
	go c.readLoop()
	return c, nil
}

// connect sends CONNECT and waits for CONNECTED; it returns the negotiated
// interval at which we must send heart-beats.
func (c *conn) connect(ctx context.Context, cfg *Config, hb frames.HeartBeat) (time.Duration, error) {
	esc := frames.EscapingFor(frames.V12, frames.CmdConnect)
	c.wmu.Lock()
	c.out = frames.AppendCommand(c.out, frames.CmdConnect)
	c.out = frames.AppendHeaderString(c.out, esc, "accept-version", "1.2")
	c.out = frames.AppendHeaderString(c.out, esc, "host", cfg.Host)
	if cfg.Login != "" {
		c.out = frames.AppendHeaderString(c.out, esc, "login", cfg.Login)
		c.out = frames.AppendHeaderString(c.out, esc, "passcode", cfg.Passcode)
	}
	c.out = append(c.out, "heart-beat:"...)
	c.out = frames.AppendHeartBeat(c.out, hb)
	c.out = append(c.out, '\n')
	c.out = frames.AppendEnd(c.out)
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("send CONNECT: %w", err)
	}
	select {
	case f := <-c.connected:
		if v, _ := f.Header("version"); string(v) != "1.2" {
			return 0, fmt.Errorf("CONNECTED with version %q, want 1.2", v)
		}
		var remote frames.HeartBeat
		if v, ok := f.Header(frames.HeaderHeartBeat); ok {
			if remote, err = frames.ParseHeartBeat(v); err != nil {
				return 0, fmt.Errorf("CONNECTED: %w", err)
			}
		}
		send, _ := frames.NegotiateHeartBeat(hb, remote)
		return send, nil
	case <-c.done:
		return 0, fmt.Errorf("waiting for CONNECTED: %w", c.endErr())
	case <-ctx.Done():
		return 0, fmt.Errorf("waiting for CONNECTED: %w", context.Cause(ctx))
	}
}

// subscribe sends SUBSCRIBE (id 0); with a receipt, it waits for it.
func (c *conn) subscribe(ctx context.Context, destination, ack string, prefetch int, receipt bool) error {
	esc := frames.EscapingFor(frames.V12, frames.CmdSubscribe)
	c.wmu.Lock()
	c.out = frames.AppendCommand(c.out, frames.CmdSubscribe)
	c.out = frames.AppendHeaderString(c.out, esc, "id", "0")
	c.out = frames.AppendHeaderString(c.out, esc, "destination", destination)
	c.out = frames.AppendHeaderString(c.out, esc, "ack", ack)
	if prefetch > 0 {
		c.out = frames.AppendHeaderInt(c.out, esc, "prefetch-count", int64(prefetch))
	}
	if receipt {
		c.out = frames.AppendHeaderString(c.out, esc, "receipt", subscribeReceipt)
	}
	c.out = frames.AppendEnd(c.out)
	err := c.flushLocked()
	c.wmu.Unlock()
	if err != nil || !receipt {
		return wrapNonNil("send SUBSCRIBE", err)
	}
	select {
	case <-c.subscribed:
		return nil
	case <-c.done:
		return fmt.Errorf("waiting for the SUBSCRIBE receipt: %w", c.endErr())
	case <-ctx.Done():
		return fmt.Errorf("waiting for the SUBSCRIBE receipt: %w", context.Cause(ctx))
	}
}

// wrapNonNil wraps err with what, or returns nil.
func wrapNonNil(what string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// flushLocked writes out (one WebSocket message over WebSocket). The
// caller holds wmu.
func (c *conn) flushLocked() error {
	if c.webSocket {
		if len(c.out) == wsRoom {
			return nil
		}
		start := putWSHeader(c.out)
		_, err := c.nc.Write(c.out[start:])
		c.out = c.out[:wsRoom]
		return err
	}
	if len(c.out) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.out)
	c.out = c.out[:0]
	return err
}

// buffered is how many bytes wait in out. The caller holds wmu.
func (c *conn) buffered() int {
	if c.webSocket {
		return len(c.out) - wsRoom
	}
	return len(c.out)
}

// heartbeat sends one EOL.
func (c *conn) heartbeat() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.out = frames.AppendHeartbeat(c.out)
	return c.flushLocked()
}

// readLoop parses everything the broker sends until the connection ends.
func (c *conn) readLoop() {
	defer func() {
		if c.onEnd != nil {
			c.onEnd(c.err)
		}
		close(c.done)
	}()
	for {
		n, err := c.r.Read(c.readBuf)
		if n > 0 {
			if perr := c.parser.Parse(c.readBuf[:n], c); perr != nil {
				c.err = perr
				_ = c.nc.Close()
				return
			}
			if c.pending {
				c.pending = false
				c.wmu.Lock()
				ferr := c.flushLocked()
				c.wmu.Unlock()
				if ferr != nil {
					c.err = c.endReason(ferr)
					return
				}
			}
		}
		if err != nil {
			c.err = c.endReason(err)
			return
		}
	}
}

// endReason says why the stream ended: nil once we asked for it.
func (c *conn) endReason(err error) error {
	closing := c.isClosing()
	select {
	case <-c.bye:
		return nil
	default:
	}
	if closing {
		return nil
	}
	return fmt.Errorf("%w: %w", errClosedByBroker, err)
}

// HandleFrame dispatches one frame from the broker (frames.Handler).
func (c *conn) HandleFrame(f *frames.Frame) error {
	switch f.Command {
	case frames.CmdMessage:
		if c.onMessage == nil {
			return errors.New("MESSAGE on a connection without a subscription")
		}
		return c.onMessage(f)
	case frames.CmdReceipt:
		id, _ := f.Header("receipt-id")
		switch string(id) {
		case disconnectReceipt:
			close(c.bye)
			return nil
		case subscribeReceipt:
			close(c.subscribed)
			return nil
		}
		if c.onReceipt == nil {
			return fmt.Errorf("unexpected RECEIPT %q", id)
		}
		return c.onReceipt(id)
	case frames.CmdConnected:
		select {
		case c.connected <- f.Clone():
			return nil
		default:
			return errors.New("a second CONNECTED")
		}
	case frames.CmdError:
		return brokerError(f)
	}
	return fmt.Errorf("unexpected %s frame", f.Command)
}

// HandleHeartbeat accepts the broker's heart-beats (frames.Handler).
func (c *conn) HandleHeartbeat() error { return nil }

// brokerError turns an ERROR frame into an error carrying its message.
func brokerError(f *frames.Frame) error {
	msg, _ := f.Header("message")
	code, _ := f.Header("error-code")
	body := f.Body
	if i := bytes.IndexByte(body, '\n'); i >= 0 {
		body = body[:i]
	}
	if len(body) > 200 {
		body = body[:200]
	}
	s := strconv.Quote(string(msg))
	if len(code) > 0 {
		s += " (error-code " + string(code) + ")"
	}
	if len(body) > 0 {
		s += ": " + string(body)
	}
	return fmt.Errorf("%w: %s", errBrokerError, s)
}

// disconnect sends DISCONNECT with a receipt, waits for it (bounded by
// ctx) and closes. The reader's own end is reported through onEnd.
func (c *conn) disconnect(ctx context.Context) error {
	c.mu.Lock()
	already := c.closing
	c.closing = true
	c.mu.Unlock()
	if already {
		<-c.done
		return nil
	}
	c.wmu.Lock()
	c.out = append(c.out, "DISCONNECT\nreceipt:"+disconnectReceipt+"\n\n\x00"...)
	werr := c.flushLocked()
	c.wmu.Unlock()
	var err error
	if werr == nil {
		select {
		case <-c.bye:
		case <-c.done:
		case <-ctx.Done():
			err = fmt.Errorf("waiting for the DISCONNECT receipt: %w", context.Cause(ctx))
		}
	}
	_ = c.nc.Close()
	<-c.done
	return err
}

// endErr is why the reader ended (after done): its error, or that we
// closed the connection.
func (c *conn) endErr() error {
	if c.err != nil {
		return c.err
	}
	return net.ErrClosed
}

// isClosing reports whether we are closing the connection.
func (c *conn) isClosing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closing
}

// abort closes the connection without DISCONNECT (the run is failing).
func (c *conn) abort() {
	c.mu.Lock()
	c.closing = true
	c.mu.Unlock()
	_ = c.nc.Close()
}
