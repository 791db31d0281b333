package wsadapter

import (
	"bufio"
	"encoding/binary"

	"github.com/gobwas/ws"
)

// frameHeader is the part of a WebSocket frame header the reader needs.
type frameHeader struct {
	fin    bool
	rsv    byte
	op     ws.OpCode
	masked bool
	mask   [4]byte
	length int64
}

// readHeader parses one frame header from br without allocating (gobwas's
// ws.ReadHeader allocates a buffer per call).
func readHeader(br *bufio.Reader) (frameHeader, error) {
	var h frameHeader
	b, err := br.Peek(2)
	if err != nil {
		return h, err
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = (b[0] >> 4) & 0x7
	h.op = ws.OpCode(b[0] & 0x0f)
	h.masked = b[1]&0x80 != 0
	size := 2
	length := int64(b[1] & 0x7f)
	switch length {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if h.masked {
		size += 4
	}
	if b, err = br.Peek(size); err != nil {
		return h, err
	}
	at := 2
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(b[2:4]))
		at = 4
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		if u > 1<<62 {
			return h, protocolError(CloseProtocolError, "frame length out of range")
		}
		length = int64(u)
		at = 10
	}
	h.length = length
	if h.masked {
		copy(h.mask[:], b[at:at+4])
	}
	_, _ = br.Discard(size)
	return h, nil
}

// appendHeader appends the header of an unmasked (server) frame.
func appendHeader(dst []byte, op ws.OpCode, length int) []byte {
	dst = append(dst, 0x80|byte(op))
	switch {
	case length < 126:
		return append(dst, byte(length))
	case length <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(length))
	}
}
