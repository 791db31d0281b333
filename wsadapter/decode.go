package wsadapter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// ErrDetached is returned by Read after Detach: the caller reads the
// socket itself and hands the bytes to Feed.
var ErrDetached = errors.New("wsadapter: Read after Detach (the caller reads the socket and calls Feed)")

// Feed decodes raw bytes read from the socket: client-to-server WebSocket
// frames cut anywhere (a chunk may end inside a frame header, a payload, a
// control frame or a UTF-8 sequence; what is needed of it is kept in the
// Conn, a few dozen bytes, and a control frame's cut payload in a buffer
// from Config.Buffers). The payload bytes of data messages are
// unmasked in place in raw and handed to stomp, possibly in several calls
// per chunk and never as an empty slice; the slice is valid only during
// the call. Control frames are handled as Read handles them: a ping is
// answered with a pong, a pong calls Ponged, a close is echoed and Feed
// returns io.EOF. A violation returns a *ProtocolError naming the close
// code to send; an error from stomp is returned as is at once, and the
// rest of raw is dropped. After an error every later Feed returns it again.
//
// Feed is for one goroutine at a time (the driver's reader of the moment)
// and allocates nothing in steady state (with Config.Buffers set: without
// it, one 128-byte buffer per control frame whose payload is cut). Use it after Detach, never
// together with Read.
func (c *Conn) Feed(raw []byte, stomp func(payload []byte) error) error {
	_, err := c.decode(raw, stomp)
	return err
}

// Detach drops the bufio.Reader the upgrade left (net/http's hijack
// buffer, kept otherwise for the connection's life) and returns a copy of
// the bytes it had already read ahead from the socket, or nil: a client
// may send CONNECT in the same packet as its upgrade request, so the
// caller Feeds these first. After Detach, Read returns ErrDetached.
func (c *Conn) Detach() []byte {
	br := c.br
	c.br = nil
	if br == nil || br.Buffered() == 0 {
		return nil
	}
	ahead, _ := br.Peek(br.Buffered()) // cannot fail: the bytes are buffered
	return bytes.Clone(ahead)
}

// Read fills p with STOMP bytes from the payloads of data messages,
// unmasking them in place; message boundaries are not preserved (a STOMP
// frame may span messages and a message may hold several frames). Pings
// are answered; a close frame is answered and ends the stream with io.EOF;
// a violation returns a *ProtocolError naming the close code to send, and
// the end of the stream inside a frame io.ErrUnexpectedEOF.
// A frame that carries no STOMP byte (a ping, a pong, an empty message)
// makes Read return 0 and a nil error: the peer is alive even though no
// STOMP byte came, and a driver counts that as liveness (a browser answers
// pings without running page scripts).
//
// Read runs the decoder Feed runs, over raw bytes it reads into p. It asks
// the bufio.Reader for no more than the rest of the current frame header
// or payload, so one call never goes past the end of a frame: that is
// what makes each payload-less frame its own 0, nil. A read deadline may
// interrupt it anywhere, even inside a header: the decoder keeps what it
// has, and the next Read goes on from there.
func (c *Conn) Read(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	if c.br == nil {
		return 0, ErrDetached
	}
	if len(p) == 0 {
		return 0, nil
	}
	for {
		m, rerr := c.br.Read(p[:min(len(p), c.need())])
		n, err := c.decode(p[:m], nil)
		if err != nil {
			return 0, err
		}
		if rerr != nil {
			if rerr == io.EOF && c.midFrame() {
				rerr = io.ErrUnexpectedEOF
			}
			return n, rerr
		}
		// m never goes past the end of the current header or payload, so
		// the decoder is between frames only when this read ended one.
		if n > 0 || m > 0 && c.remaining == 0 && c.hdrN == 0 {
			return n, nil
		}
		// Only part of a frame header came: read on, as a Read blocked on
		// a whole header before.
	}
}

// need is how many raw bytes finish the current frame header or payload;
// for a control frame, header and payload at once, so that it is most
// often decoded whole, in place (its length, at most 125, is in hdr[1]).
func (c *Conn) need() int {
	switch {
	case c.remaining > 0:
		return int(min(c.remaining, 1<<30))
	case c.hdrN < 2:
		return 2 - int(c.hdrN)
	}
	n := headerLen(c.hdr[0], c.hdr[1]) - int(c.hdrN)
	if ws.OpCode(c.hdr[0]&0x0f).IsControl() && c.hdr[1]&0x7f <= 125 {
		n += int(c.hdr[1] & 0x7f)
	}
	return n
}

// midFrame reports whether the stream has stopped inside a frame or a
// fragmented message.
func (c *Conn) midFrame() bool {
	return c.hdrN > 0 || c.remaining > 0 || c.inMessage
}

// decode runs raw through the decoder and keeps the first error for good.
// With stomp nil (Read's sink), payload bytes are moved to the front of raw
// instead, and their count is returned: a payload byte never lies before
// the raw bytes that carried it, so the move overwrites only bytes already
// decoded.
func (c *Conn) decode(raw []byte, stomp func([]byte) error) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.decodeChunk(raw, stomp)
	if err != nil {
		c.err = err
	}
	return n, err
}

func (c *Conn) decodeChunk(raw []byte, stomp func([]byte) error) (w int, err error) {
	for r := 0; r < len(raw); {
		if c.remaining == 0 { // between frames, or inside a header
			k, whole := c.takeHeader(raw[r:])
			r += k
			if whole {
				if err := c.startFrame(); err != nil {
					return w, err
				}
			}
			continue
		}
		k := min(len(raw)-r, int(c.remaining))
		piece := raw[r : r+k]
		r += k
		c.remaining -= uint32(k)
		if c.op.IsControl() {
			if err := c.controlPiece(piece); err != nil {
				return w, err
			}
			continue
		}
		ws.Cipher(piece, c.mask, int(c.offset))
		c.offset = uint8((int(c.offset) + k) & 3)
		var bad error
		if c.text {
			before := c.utf8
			if !c.utf8.feed(piece) {
				// Hand on the bytes before the one that broke the
				// sequence, whatever the chunking: so a split chunk
				// delivers what the whole one does.
				piece = piece[:validPrefix(before, piece)]
				bad = protocolError(CloseInvalidData, "invalid UTF-8 in a text message")
			}
		}
		if len(piece) > 0 {
			if stomp == nil {
				w += copy(raw[w:], piece)
			} else if err := stomp(piece); err != nil {
				return w, err
			}
		}
		if bad != nil {
			return w, bad
		}
		if c.remaining == 0 {
			if err := c.endData(); err != nil {
				return w, err
			}
		}
	}
	return w, nil
}

// controlPiece takes the next piece of a control frame's payload. A
// payload whole in one piece is handled where it lies (raw may be
// modified, and its bytes up to the piece are decoded: nothing but the
// decoder reads them again); one cut across reads is gathered in a
// buffer from c.shared, given back once the frame is handled.
func (c *Conn) controlPiece(piece []byte) error {
	if c.control == nil {
		if c.remaining == 0 {
			return c.endControl(piece)
		}
		c.control = c.shared.getControl()
	}
	cb := c.control
	cb.n += uint8(copy(cb.b[cb.n:], piece))
	if c.remaining > 0 {
		return nil
	}
	c.control = nil
	err := c.endControl(cb.b[:cb.n])
	c.shared.putControl(cb) // endControl keeps nothing of the payload
	return err
}

// validPrefix is how many bytes of b u accepts before it fails.
func validPrefix(u utf8Stream, b []byte) int {
	for i := range b {
		if !u.feed(b[i : i+1]) {
			return i
		}
	}
	return len(b)
}

// takeHeader adds bytes of b to the header being read; it reports how
// many it took and whether the header is now whole (in c.hdr).
func (c *Conn) takeHeader(b []byte) (int, bool) {
	k := 0
	if c.hdrN < 2 {
		k = copy(c.hdr[c.hdrN:2], b)
		c.hdrN += uint8(k)
		if c.hdrN < 2 {
			return k, false
		}
	}
	size := headerLen(c.hdr[0], c.hdr[1])
	m := copy(c.hdr[c.hdrN:size], b[k:])
	c.hdrN += uint8(m)
	return k + m, int(c.hdrN) == size
}

// startFrame checks the header in c.hdr against RFC 6455 and opens its
// frame; a frame without payload ends here.
func (c *Conn) startFrame() error {
	h, err := parseHeader(c.hdr[:c.hdrN])
	c.hdrN = 0
	switch {
	case err != nil:
		return err
	case h.rsv != 0:
		return protocolError(CloseProtocolError, "reserved bits set without a negotiated extension")
	case !h.masked:
		return protocolError(CloseProtocolError, "client frame not masked")
	}
	c.op, c.mask, c.offset = h.op, h.mask, 0
	if h.op.IsControl() {
		// RFC 6455: at most 125 bytes, never fragmented. A reserved
		// opcode is refused before its payload is read.
		switch {
		case !h.fin || h.length > 125:
			return protocolError(CloseProtocolError, "fragmented or oversized control frame")
		case h.op != ws.OpPing && h.op != ws.OpPong && h.op != ws.OpClose:
			return protocolError(CloseProtocolError, fmt.Sprintf("reserved opcode %d", h.op))
		}
		if h.length == 0 {
			return c.endControl(nil)
		}
		c.remaining = uint32(h.length)
		return nil
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
	if int64(c.size)+h.length > int64(c.maxMessage) {
		return protocolError(CloseTooBig, fmt.Sprintf("message over %d bytes", c.maxMessage))
	}
	// Both fit in 32 bits: the message so far is at most maxMessage.
	c.size += uint32(h.length)
	c.remaining = uint32(h.length)
	c.inMessage = !h.fin
	if h.length == 0 {
		return c.endData()
	}
	return nil
}

// endData closes a data frame whose payload has all been decoded.
func (c *Conn) endData() error {
	if !c.inMessage && c.text && !c.utf8.end() {
		return protocolError(CloseInvalidData, "text message ends inside a UTF-8 sequence")
	}
	return nil
}

// endControl acts on a control frame whose payload (still masked) is
// all in payload, unmasking it in place: ping gets a pong, close gets a
// close, pong calls Ponged. Nothing of payload is kept.
func (c *Conn) endControl(payload []byte) error {
	ws.Cipher(payload, c.mask, 0)
	switch c.op {
	case ws.OpPing:
		if err := c.writeControl(ws.OpPong, payload); err != nil { // a pong echoes the ping's payload
			// The peer is not reading; this is not a read timeout.
			return fmt.Errorf("wsadapter: answering a ping: %w", ErrClosed)
		}
		return nil
	case ws.OpClose:
		code := CloseNormal
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
		_ = c.sendClose(code, "", true) // echo the peer's code, completing the handshake
		return io.EOF
	default: // a pong: startFrame lets no other opcode through
		if c.Ponged != nil {
			c.Ponged()
		}
		return nil
	}
}
