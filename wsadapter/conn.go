package wsadapter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
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

// Conn is one WebSocket connection carrying STOMP. Read (or, after
// Detach, Feed) is for one reader at a time; WriteFrames and Close may be
// called from another goroutine (writes are serialised, since the reader
// answers pings itself).
type Conn struct {
	nc         net.Conn      // immutable
	br         *bufio.Reader // Read only; may hold bytes read during the upgrade; nil after Detach
	maxMessage int64         // immutable: largest message payload accepted

	// Decoder state (Feed or Read only): all a frame cut across socket
	// reads needs between chunks, so nothing else is held while idle.
	hdr       [14]byte   // the frame header read so far (the longest is 14 bytes)
	hdrN      uint8      // bytes of hdr filled
	op        ws.OpCode  // of the frame whose payload is being read
	offset    uint8      // mask offset (mod 4) within the current data frame
	ctlN      uint8      // payload bytes of the current control frame in control
	inMessage bool       // a fragmented message is open
	text      bool       // the open message is text
	mask      [4]byte    // of the current frame
	remaining int64      // payload bytes of the current frame still to come
	size      int64      // payload bytes of the open message so far
	frames    uint32     // frames ended, so Read can tell a frame without payload
	err       error      // the decoder's first error, returned for good
	utf8      utf8Stream // across chunks and fragments of a text message
	control   [125]byte  // payload of a control frame

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
