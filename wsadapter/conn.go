package wsadapter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// CloseCode is a WebSocket close status (RFC 6455, section 7.4.1).
type CloseCode uint16

// The close codes stompbox sends.
const (
	CloseNormal        CloseCode = 1000 // after DISCONNECT
	CloseGoingAway     CloseCode = 1001 // going away (not sent by stompbox today; counted)
	CloseProtocolError CloseCode = 1002 // broken WebSocket or STOMP framing
	CloseInvalidData   CloseCode = 1007 // invalid UTF-8 in a text message
	ClosePolicy        CloseCode = 1008 // auth, forbidden, limits, timeouts
	CloseTooBig        CloseCode = 1009 // message over the size limit
	CloseInternal      CloseCode = 1011 // server fault
	// CloseServiceRestart is sent at server shutdown: the service is
	// restarting, so a client should reconnect (after the ERROR's
	// reconnect-after).
	CloseServiceRestart CloseCode = 1012
)

// ProtocolError is a WebSocket-level violation by the peer; Code is the
// close code it calls for.
type ProtocolError struct {
	Code   CloseCode
	Reason string
}

func (e *ProtocolError) Error() string {
	return fmt.Sprintf("wsadapter: %s (close %d)", e.Reason, e.Code)
}

func protocolError(code CloseCode, reason string) error {
	return &ProtocolError{Code: code, Reason: reason}
}

// ErrClosed is returned by writes after the close handshake has begun.
var ErrClosed = errors.New("wsadapter: connection closed")

// Conn is one WebSocket connection carrying STOMP. Read is for one reader
// goroutine; WriteFrames and Close may be called from another (writes are
// serialised, since the reader answers pings itself).
type Conn struct {
	nc         net.Conn      // immutable
	br         *bufio.Reader // reader only; may hold bytes read during the upgrade
	maxMessage int64         // immutable: largest message payload accepted

	// Reader only: the data frame being read.
	remaining int64   // payload bytes of the current frame still to read
	mask      [4]byte // of the current frame
	offset    int     // mask offset within the current frame
	inMessage bool    // a fragmented message is open
	text      bool    // the open message is text
	size      int64   // payload bytes of the open message so far
	utf8      utf8Stream
	control   [125]byte // payload of a control frame

	wmu     sync.Mutex
	headers []byte      // guarded by wmu: WS headers of the batch being written
	iov     [][]byte    // guarded by wmu: the batch as header/payload slices (writev)
	closed  bool        // guarded by wmu: a close frame was sent
	bufs    net.Buffers // guarded by wmu: a field, so the batch's header escapes nothing per call

	// WriteDeadline, when set, gives the deadline for the reader's own
	// writes (pongs, the close echo). Set before the first Read.
	WriteDeadline func() time.Time
	// Closed, when set, is told the code of the close frame this side
	// sends (once), and whether it echoes the peer's close (byPeer) or
	// starts the close handshake. Set before the first Read.
	Closed func(code CloseCode, byPeer bool)
	// Ponged, when set, is called for each pong read (on the reader's
	// goroutine). Set before the first Read.
	Ponged func()

	// ctl (guarded by wmu) is where control frames (ping, pong, close)
	// are built: kept here, writing one allocates nothing.
	ctl [2 + 125]byte
}

func newConn(nc net.Conn, br *bufio.Reader, maxMessage int) *Conn {
	return &Conn{nc: nc, br: br, maxMessage: int64(maxMessage)}
}

// NetConn returns the underlying connection (for deadlines and addresses).
func (c *Conn) NetConn() net.Conn { return c.nc }

// Read fills p with STOMP bytes from the payloads of data messages,
// unmasking them in place; message boundaries are not preserved (a STOMP
// frame may span messages and a message may hold several frames). Pings
// are answered; a close frame is answered and ends the stream with io.EOF;
// a violation returns a *ProtocolError naming the close code to send.
// A frame that carries no STOMP byte (a ping, a pong, an empty message)
// makes Read return 0 and a nil error: the peer is alive even though no
// STOMP byte came, and a driver counts that as liveness (a browser answers
// pings without running page scripts).
func (c *Conn) Read(p []byte) (int, error) {
	if c.remaining == 0 {
		if err := c.nextFrame(); err != nil {
			return 0, err
		}
		if c.remaining == 0 {
			return 0, nil
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := c.br.Read(p[:min(int64(len(p)), c.remaining)])
	if n > 0 {
		ws.Cipher(p[:n], c.mask, c.offset)
		c.offset += n
		c.remaining -= int64(n)
		if c.text && !c.utf8.feed(p[:n]) {
			return 0, protocolError(CloseInvalidData, "invalid UTF-8 in a text message")
		}
		if c.remaining == 0 && !c.inMessage && c.text && !c.utf8.end() {
			return 0, protocolError(CloseInvalidData, "text message ends inside a UTF-8 sequence")
		}
	}
	if err == io.EOF && c.remaining > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// nextFrame reads frame headers until a data frame with payload is open,
// handling control frames and checking the rules of RFC 6455 on the way.
func (c *Conn) nextFrame() error {
	h, err := readHeader(c.br)
	if err != nil {
		var pe *ProtocolError
		if errors.As(err, &pe) {
			return err
		}
		if err == io.EOF && c.inMessage {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	switch {
	case h.rsv != 0:
		return protocolError(CloseProtocolError, "reserved bits set without a negotiated extension")
	case !h.masked:
		return protocolError(CloseProtocolError, "client frame not masked")
	}
	if h.op.IsControl() {
		return c.handleControl(h)
	}
	switch h.op {
	case ws.OpContinuation:
		if !c.inMessage {
			return protocolError(CloseProtocolError, "continuation frame without a message")
		}
	case ws.OpText, ws.OpBinary:
		if c.inMessage {
			return protocolError(CloseProtocolError, "new message inside a fragmented one")
		}
		c.text, c.size = h.op == ws.OpText, 0
	default:
		return protocolError(CloseProtocolError, fmt.Sprintf("reserved opcode %d", h.op))
	}
	// The limit applies before any payload byte is read.
	if c.size+h.length > c.maxMessage {
		return protocolError(CloseTooBig, fmt.Sprintf("message over %d bytes", c.maxMessage))
	}
	c.size += h.length
	c.inMessage = !h.fin
	c.remaining, c.mask, c.offset = h.length, h.mask, 0
	if h.fin && h.length == 0 && c.text && !c.utf8.end() {
		return protocolError(CloseInvalidData, "text message ends inside a UTF-8 sequence")
	}
	return nil
}

// handleControl reads a control frame (RFC 6455: at most 125 bytes, never
// fragmented): ping gets a pong, close gets a close, pong is ignored.
func (c *Conn) handleControl(h frameHeader) error {
	if !h.fin || h.length > 125 {
		return protocolError(CloseProtocolError, "fragmented or oversized control frame")
	}
	// Peek, then Discard: a read deadline (the driver interrupts reads on
	// purpose) leaves the control frame unread rather than half read.
	// readHeader peeks the same way, so a timed-out Read can be retried.
	peeked, err := c.br.Peek(int(h.length))
	if err != nil {
		return err
	}
	payload := c.control[:h.length]
	copy(payload, peeked)
	_, _ = c.br.Discard(len(peeked))
	ws.Cipher(payload, h.mask, 0)
	switch h.op {
	case ws.OpPing:
		if err := c.writeControl(ws.OpPong, payload); err != nil { // a pong echoes the ping's payload
			// The peer is not reading; this is not a read timeout.
			return fmt.Errorf("wsadapter: answering a ping: %w", ErrClosed)
		}
		return nil
	case ws.OpClose:
		code, reason := CloseNormal, ""
		switch {
		case len(payload) == 1:
			return protocolError(CloseProtocolError, "close frame with a one-byte payload")
		case len(payload) >= 2:
			code = CloseCode(binary.BigEndian.Uint16(payload))
			if !(code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999) {
				return protocolError(CloseProtocolError, "invalid close code")
			}
			if !utf8.Valid(payload[2:]) {
				return protocolError(CloseProtocolError, "close reason is not UTF-8")
			}
		}
		_ = c.sendClose(code, reason, true) // echo the peer's code, completing the handshake
		return io.EOF
	case ws.OpPong:
		if c.Ponged != nil {
			c.Ponged()
		}
		return nil
	}
	return protocolError(CloseProtocolError, fmt.Sprintf("reserved opcode %d", h.op))
}

func (c *Conn) writeControl(op ws.OpCode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return ErrClosed
	}
	b := append(appendHeader(c.ctl[:0], op, len(payload)), payload...)
	if c.WriteDeadline != nil {
		_ = c.nc.SetWriteDeadline(c.WriteDeadline())
	}
	_, err := c.nc.Write(b)
	return err
}

// WritePing sends a ping with an empty payload; the peer answers with a
// pong (browsers do so without running page scripts). It allocates
// nothing. Like WriteFrames, it may be called from the writer goroutine.
func (c *Conn) WritePing() error { return c.writeControl(ws.OpPing, nil) }

// WriteFrames writes out as WebSocket messages, one per STOMP frame:
// frame i is out[ends[i-1]:ends[i]] (from 0 for the first). A frame is a
// text message when it is valid UTF-8 and binary otherwise, since browsers
// drop a connection that sends invalid UTF-8 as text. The whole batch goes
// out in one vectored write without copying the frames.
func (c *Conn) WriteFrames(out []byte, ends []int) error {
	return c.WriteFramesText(out, ends, nil)
}

// WriteFramesText is WriteFrames for a caller that knows which frames are
// valid UTF-8: frame i goes out as a text message when text[i] is true,
// as binary otherwise, without scanning it (a 64 KiB body fanned out to a
// thousand subscribers is then checked once, not a thousand times). With
// text nil every frame is scanned, as WriteFrames does.
func (c *Conn) WriteFramesText(out []byte, ends []int, text []bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return ErrClosed
	}
	if cap(c.headers) < 10*len(ends) { // never grown while iov points into it
		c.headers = make([]byte, 0, 10*len(ends))
	}
	headers, iov := c.headers[:0], c.iov[:0]
	start := 0
	for i, end := range ends {
		frame := out[start:end]
		op := ws.OpText
		if text != nil && !text[i] || text == nil && !utf8.Valid(frame) {
			op = ws.OpBinary
		}
		at := len(headers)
		headers = appendHeader(headers, op, len(frame))
		iov = append(iov, headers[at:len(headers):len(headers)], frame)
		start = end
	}
	c.headers = headers
	c.bufs = net.Buffers(iov)
	_, err := c.bufs.WriteTo(c.nc)
	c.bufs = nil
	clear(iov)
	c.iov = iov[:0]
	return err
}

// Close sends a close frame with code and reason (once; later calls do
// nothing). It does not close the socket: the caller does, after the peer's
// answer or a short linger.
func (c *Conn) Close(code CloseCode, reason string) error {
	return c.sendClose(code, reason, false)
}

func (c *Conn) sendClose(code CloseCode, reason string, byPeer bool) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if c.Closed != nil {
		c.Closed(code, byPeer)
	}
	var buf [2 + 125]byte
	payload := binary.BigEndian.AppendUint16(buf[2:2], uint16(code))
	payload = append(payload, reason[:min(len(reason), 123)]...)
	b := append(appendHeader(buf[:0:2], ws.OpClose, len(payload)), payload...)
	if c.WriteDeadline != nil {
		_ = c.nc.SetWriteDeadline(c.WriteDeadline())
	}
	_, err := c.nc.Write(b)
	return err
}
