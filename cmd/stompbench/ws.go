package main

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"

	"github.com/gobwas/ws"
)

// wsRoom is the room kept in front of a WebSocket connection's output for
// the frame header: 2 bytes, up to 8 of extended length and a 4-byte mask.
const wsRoom = 14

// putWSHeader writes the header of one masked, final text frame carrying
// out[wsRoom:] into the room before it, masks the payload in place and
// returns where the frame starts. STOMP over WebSocket treats messages as a
// byte stream, so one message may carry many frames: one write per batch.
// Our bodies are ASCII, valid UTF-8, so text frames are fine.
func putWSHeader(out []byte) int {
	payload := out[wsRoom:]
	n := len(payload)
	var size int
	switch {
	case n <= 125:
		size = 2 + 4
	case n <= 0xffff:
		size = 4 + 4
	default:
		size = 10 + 4
	}
	start := wsRoom - size
	h := out[start:wsRoom]
	h[0] = 0x80 | byte(ws.OpText)
	switch {
	case n <= 125:
		h[1] = 0x80 | byte(n)
	case n <= 0xffff:
		h[1] = 0x80 | 126
		binary.BigEndian.PutUint16(h[2:], uint16(n))
	default:
		h[1] = 0x80 | 127
		binary.BigEndian.PutUint64(h[2:], uint64(n))
	}
	var mask [4]byte
	binary.LittleEndian.PutUint32(mask[:], rand.Uint32())
	copy(h[size-4:], mask[:])
	ws.Cipher(payload, mask, 0)
	return start
}

// errWSClosed is the broker's WebSocket close frame.
var errWSClosed = errors.New("websocket closed")

// wsReader turns the broker's WebSocket messages into the STOMP byte
// stream they carry, answering pings on the way. The reader goroutine of
// its conn is its only user.
type wsReader struct {
	br   *bufio.Reader
	c    *conn
	left uint64    // payload bytes of the current data frame not yet read
	hdr  [8]byte   // scratch for header bytes (a field: no allocation per frame)
	ctl  [125]byte // a control frame's payload
}

// maxServerHeader is the longest header of an unmasked frame.
const maxServerHeader = 10

// Read returns payload bytes of data frames (text, binary, continuation).
// It goes on through the frames already buffered, so one Read carries
// many small messages (the broker sends one per STOMP frame) and the
// consumer acknowledges them in one write; it blocks only with nothing
// in hand.
func (r *wsReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if r.left == 0 {
			if n > 0 && r.br.Buffered() < maxServerHeader {
				break
			}
			if err := r.nextDataFrame(); err != nil {
				return n, err
			}
			continue
		}
		if n > 0 && r.br.Buffered() == 0 {
			break
		}
		m, err := r.br.Read(p[n : n+int(min(uint64(len(p)-n), r.left))])
		n += m
		r.left -= uint64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// nextDataFrame reads frame headers, answering control frames, until a
// data frame's payload is next.
func (r *wsReader) nextDataFrame() error {
	for r.left == 0 {
		op, n, err := r.header()
		if err != nil {
			return err
		}
		if !op.IsControl() {
			r.left = n
			continue
		}
		if n > uint64(len(r.ctl)) {
			return fmt.Errorf("websocket: control frame of %d bytes", n)
		}
		body := r.ctl[:n]
		if _, err := io.ReadFull(r.br, body); err != nil {
			return fmt.Errorf("websocket: %w", err)
		}
		switch op {
		case ws.OpPing:
			if err := r.c.writeControl(ws.OpPong, body); err != nil {
				return fmt.Errorf("websocket pong: %w", err)
			}
		case ws.OpClose:
			code := 1005
			if n >= 2 {
				code = int(binary.BigEndian.Uint16(body))
			}
			_ = r.c.writeControl(ws.OpClose, body[:min(n, 2)])
			return fmt.Errorf("%w: code %d %q", errWSClosed, code, body[min(n, 2):])
		}
	}
	return nil
}

// header reads one frame header; server frames are not masked.
func (r *wsReader) header() (ws.OpCode, uint64, error) {
	b := r.hdr[:2]
	if _, err := io.ReadFull(r.br, b); err != nil {
		return 0, 0, err
	}
	op := ws.OpCode(b[0] & 0x0f)
	if b[1]&0x80 != 0 {
		return 0, 0, errors.New("websocket: masked frame from the server")
	}
	n := uint64(b[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(r.br, r.hdr[:2]); err != nil {
			return 0, 0, err
		}
		n = uint64(binary.BigEndian.Uint16(r.hdr[:2]))
	case 127:
		if _, err := io.ReadFull(r.br, r.hdr[:8]); err != nil {
			return 0, 0, err
		}
		n = binary.BigEndian.Uint64(r.hdr[:8])
	}
	return op, n, nil
}

// writeControl sends one masked control frame between our messages.
func (c *conn) writeControl(op ws.OpCode, payload []byte) error {
	f := ws.MaskFrame(ws.NewFrame(op, true, append([]byte(nil), payload...)))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return ws.WriteFrame(c.nc, f)
}
