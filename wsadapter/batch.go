package wsadapter

import (
	"net"

	"github.com/gobwas/ws"
)

// Batch is a batch of STOMP frames whose bytes are in pieces rather than
// one buffer: a broker's writer keeps a frame's headers in its own buffer
// and refers to a message body shared by every subscriber, so that the
// body is not copied once per connection.
type Batch interface {
	// Frames is the number of frames.
	Frames() int
	// AppendFrame appends frame i's pieces to iov and returns it, with
	// the frame's length (the pieces' total) and whether the frame is
	// valid UTF-8.
	AppendFrame(iov [][]byte, i int) (out [][]byte, size int, text bool)
}

// WriteBatch writes b's frames as WebSocket messages, one per frame, in
// one vectored write: each message's header, then the frame's pieces, as
// they are (nothing is copied). A frame goes out as a text message when
// b says it is valid UTF-8, as binary otherwise, as WriteFramesText does.
// On a connection that cannot write vectors (TLS) every piece is a write
// of its own: such a caller should rather flatten the batch and use
// WriteFramesText.
func (c *Conn) WriteBatch(b Batch) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closed {
		return ErrClosed
	}
	n := b.Frames()
	if cap(c.headers) < 10*n { // never grown while iov points into it
		c.headers = make([]byte, 0, 10*n)
	}
	headers, iov := c.headers[:0], c.iov[:0]
	for i := range n {
		at := len(iov)
		iov = append(iov, nil) // the header, once the frame's size is known
		var size int
		var text bool
		iov, size, text = b.AppendFrame(iov, i)
		op := ws.OpBinary
		if text {
			op = ws.OpText
		}
		h := len(headers)
		headers = appendHeader(headers, op, size)
		iov[at] = headers[h:len(headers):len(headers)]
	}
	c.headers = headers
	c.bufs = net.Buffers(iov)
	_, err := c.bufs.WriteTo(c.nc)
	c.bufs = nil
	clear(iov) // let go of the borrowed pieces
	c.iov = iov[:0]
	return err
}
