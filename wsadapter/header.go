package wsadapter

import (
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

// headerLen is the size of the frame header that starts with b0, b1:
// 2 bytes, then a 16- or 64-bit length, then the mask if there is one.
func headerLen(b0, b1 byte) int {
	_ = b0 // the size is all in the second byte
	size := 2
	switch b1 & 0x7f {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if b1&0x80 != 0 {
		size += 4
	}
	return size
}

// parseHeader parses one whole frame header (headerLen bytes) without
// allocating (gobwas's ws.ReadHeader allocates a buffer per call).
func parseHeader(b []byte) (frameHeader, error) {
	var h frameHeader
	h.fin = b[0]&0x80 != 0
	h.rsv = (b[0] >> 4) & 0x7
	h.op = ws.OpCode(b[0] & 0x0f)
	h.masked = b[1]&0x80 != 0
	length := int64(b[1] & 0x7f)
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
