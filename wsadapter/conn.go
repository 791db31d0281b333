package wsadapter

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
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
	// Fields are ordered by alignment so that the struct packs: an idle
	// connection costs its Conn, so nothing is kept here that only a
	// frame cut across reads needs (TestConnSize holds the bound).

	nc     net.Conn      // immutable
	br     *bufio.Reader // Read only; may hold bytes read during the upgrade; nil after Detach
	shared *Buffers      // immutable; nil: allocate what a cut control frame needs
	err    error         // the decoder's first error, returned for good

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

	// headers (guarded by wmu) is also where control frames (ping, pong,
	// close) are built: no buffer of their own in every Conn, and none
	// allocated per frame once it has grown.
	headers []byte      // guarded by wmu: WS headers of the batch being written
	iov     [][]byte    // guarded by wmu: the batch as header/payload slices (writev)
	bufs    net.Buffers // guarded by wmu: a field, so the batch's header escapes nothing per call

	// control gathers the payload of a control frame cut across reads
	// (Feed or Read only); nil otherwise: a control frame whole in one
	// chunk is unmasked and handled where it lies.
	control *controlBuf

	wmu sync.Mutex

	// Decoder state (Feed or Read only): all a frame cut across socket
	// reads needs between chunks. A message is at most maxMessage bytes,
	// so its counts fit in 32 bits.
	maxMessage uint32     // immutable: largest message payload accepted
	remaining  uint32     // payload bytes of the current frame still to come
	size       uint32     // payload bytes of the open message so far
	mask       [4]byte    // of the current frame
	hdr        [14]byte   // the frame header read so far (the longest is 14 bytes)
	utf8       utf8Stream // across chunks and fragments of a text message
	hdrN       uint8      // bytes of hdr filled
	op         ws.OpCode  // of the frame whose payload is being read
	offset     uint8      // mask offset (mod 4) within the current data frame
	inMessage  bool       // a fragmented message is open
	text       bool       // the open message is text

	closed bool // guarded by wmu: a close frame was sent
}

// newConn makes the Conn of an upgraded connection. A maxMessage over
// 4 GiB - 1 is taken as that: the decoder counts a message in 32 bits.
func newConn(nc net.Conn, br *bufio.Reader, maxMessage int, shared *Buffers) *Conn {
	return &Conn{nc: nc, br: br, shared: shared, maxMessage: uint32(min(uint64(max(maxMessage, 0)), math.MaxUint32))}
}

// NetConn returns the underlying connection (for deadlines and addresses).
func (c *Conn) NetConn() net.Conn { return c.nc }

// writeControl writes a control frame with payload (at most 125 bytes,
// copied: the caller may reuse it at once).
func (c *Conn) writeControl(op ws.OpCode, payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return ErrClosed
	}
	return c.writeBuilt(append(appendHeader(c.headers[:0], op, len(payload)), payload...))
}

// writeBuilt writes b, a control frame built in c.headers (with wmu held),
// and keeps what c.headers grew to: built there, a control frame costs a
// Conn no field of its own, and allocates nothing once the scratch holds
// it (WriteFrames makes it 10 bytes per frame of a batch: an empty ping
// or a close with its code needs 4; only a long ping's pong or a long
// close reason grows it, once, to 127 at most).
func (c *Conn) writeBuilt(b []byte) error {
	c.headers = b[:0]
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
	reason = reason[:min(len(reason), 123)]
	b := appendHeader(c.headers[:0], ws.OpClose, 2+len(reason))
	b = binary.BigEndian.AppendUint16(b, uint16(code))
	return c.writeBuilt(append(b, reason...))
}
