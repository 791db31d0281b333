package wsadapter

import (
	"bytes"
	"errors"
	"io"
	"testing"

	"github.com/gobwas/ws"
)

// RFC 6455, section 5.2: "The length of the 'Payload data', in bytes: if
// 0-125, that is the payload length. If 126, the following 2 bytes ... are
// the payload length. If 127, the following 8 bytes ... (the most
// significant bit MUST be 0) are the payload length." The mask, when the
// MASK bit is set, follows the length.
func TestReadHeader(t *testing.T) {
	mask := [4]byte{0x11, 0x22, 0x33, 0x44}
	tests := []struct {
		name string
		wire []byte
		want frameHeader
	}{
		{
			name: "7-bit length 0, unmasked",
			wire: []byte{0x81, 0x00},
			want: frameHeader{fin: true, op: ws.OpText},
		},
		{
			name: "7-bit length 5, masked",
			wire: []byte{0x82, 0x85, 0x11, 0x22, 0x33, 0x44},
			want: frameHeader{fin: true, op: ws.OpBinary, masked: true, mask: mask, length: 5},
		},
		{
			name: "7-bit length 125, masked continuation without FIN",
			wire: []byte{0x00, 0x80 | 125, 0x11, 0x22, 0x33, 0x44},
			want: frameHeader{op: ws.OpContinuation, masked: true, mask: mask, length: 125},
		},
		{
			name: "16-bit length 126",
			wire: []byte{0x81, 0x80 | 126, 0x00, 126, 0x11, 0x22, 0x33, 0x44},
			want: frameHeader{fin: true, op: ws.OpText, masked: true, mask: mask, length: 126},
		},
		{
			name: "16-bit length 65535, unmasked",
			wire: []byte{0x82, 126, 0xff, 0xff},
			want: frameHeader{fin: true, op: ws.OpBinary, length: 65535},
		},
		{
			name: "64-bit length 65536",
			wire: []byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 1, 0, 0, 0x11, 0x22, 0x33, 0x44},
			want: frameHeader{fin: true, op: ws.OpBinary, masked: true, mask: mask, length: 65536},
		},
		{
			name: "64-bit length 2^40",
			wire: []byte{0x81, 0x80 | 127, 0, 0, 1, 0, 0, 0, 0, 0, 0x11, 0x22, 0x33, 0x44},
			want: frameHeader{fin: true, op: ws.OpText, masked: true, mask: mask, length: 1 << 40},
		},
		{
			name: "rsv bits and a control opcode",
			wire: []byte{0x80 | 0x70 | 0x9, 0x80 | 3, 0x11, 0x22, 0x33, 0x44},
			want: frameHeader{fin: true, rsv: 7, op: ws.OpPing, masked: true, mask: mask, length: 3},
		},
		{
			name: "reserved opcode is reported, not judged",
			wire: []byte{0x8b, 0x80, 0x11, 0x22, 0x33, 0x44},
			want: frameHeader{fin: true, op: ws.OpCode(0xb), masked: true, mask: mask},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const trailer = "next"
			got, size, err := headerOf(append(append([]byte(nil), tt.wire...), trailer...))
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("parseHeader = %+v, want %+v", got, tt.want)
			}
			// Exactly the header is taken.
			if size != len(tt.wire) {
				t.Fatalf("header of %d bytes, want %d", size, len(tt.wire))
			}
		})
	}
}

// headerOf parses the header at the start of b as the decoder does (the
// size from the first two bytes, then the whole header) and says how many
// bytes it took.
func headerOf(b []byte) (frameHeader, int, error) {
	var c Conn
	k, whole := c.takeHeader(b)
	if !whole {
		return frameHeader{}, k, io.ErrUnexpectedEOF
	}
	h, err := parseHeader(c.hdr[:c.hdrN])
	return h, k, err
}

// parseHeader agrees with gobwas/ws's own encoder for every length class.
func TestReadHeaderMatchesGobwasWriter(t *testing.T) {
	for _, length := range []int64{0, 1, 125, 126, 127, 1000, 65535, 65536, 1 << 32, 1 << 62} {
		for _, masked := range []bool{false, true} {
			h := ws.Header{Fin: length%2 == 0, OpCode: ws.OpBinary, Length: length, Masked: masked}
			if masked {
				h.Mask = [4]byte{1, 2, 3, byte(length)}
			}
			var buf bytes.Buffer
			if err := ws.WriteHeader(&buf, h); err != nil {
				t.Fatal(err)
			}
			size := buf.Len()
			got, _, err := headerOf(buf.Bytes())
			if err != nil {
				t.Fatalf("length %d masked %v: %v", length, masked, err)
			}
			want := frameHeader{fin: h.Fin, op: h.OpCode, masked: masked, mask: h.Mask, length: length}
			if got != want {
				t.Errorf("length %d masked %v (%d header bytes): got %+v, want %+v", length, masked, size, got, want)
			}
		}
	}
}

// A 64-bit length with the most significant bit set is a protocol error.
func TestReadHeaderLengthMSB(t *testing.T) {
	wire := []byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}
	_, _, err := headerOf(wire)
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CloseProtocolError {
		t.Fatalf("err = %v, want a ProtocolError with close code 1002", err)
	}
}

// A header cut anywhere is not a frame yet: the decoder keeps its bytes
// and takes the rest from the next chunk, then parses what one piece gives.
func TestReadHeaderTruncated(t *testing.T) {
	full := []byte{0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4}
	want, _, err := headerOf(full)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(full) {
		var c Conn
		if k, whole := c.takeHeader(full[:n]); whole || k != n {
			t.Fatalf("%d of %d header bytes: took %d, whole %v; want all taken, not whole", n, len(full), k, whole)
		}
		// The next chunk carries the rest and a payload byte after it.
		if k, whole := c.takeHeader(append(full[n:len(full):len(full)], 'x')); !whole || k != len(full)-n {
			t.Fatalf("cut at %d: second chunk took %d, whole %v; want %d, whole", n, k, whole, len(full)-n)
		}
		if got, err := parseHeader(c.hdr[:c.hdrN]); err != nil || got != want {
			t.Fatalf("cut at %d: %+v, %v; want %+v", n, got, err, want)
		}
	}
}

// appendHeader writes what gobwas/ws reads back: FIN set, no RSV bits, the
// opcode, no mask (RFC 6455: "A server MUST NOT mask any frames"), the
// length in the shortest encoding.
func TestAppendHeaderRoundTrip(t *testing.T) {
	ops := []ws.OpCode{ws.OpText, ws.OpBinary, ws.OpClose, ws.OpPing, ws.OpPong}
	for _, length := range []int{0, 1, 125, 126, 127, 65535, 65536, 1 << 20, 1<<31 + 7} {
		for _, op := range ops {
			b := appendHeader([]byte("prefix"), op, length)
			if string(b[:6]) != "prefix" {
				t.Fatalf("appendHeader overwrote dst: %q", b)
			}
			b = b[6:]
			r := bytes.NewReader(b)
			h, err := ws.ReadHeader(r)
			if err != nil {
				t.Fatalf("op %v length %d: %v (%x)", op, length, err, b)
			}
			want := ws.Header{Fin: true, OpCode: op, Length: int64(length)}
			if h != want {
				t.Errorf("op %v length %d: gobwas reads %+v, want %+v", op, length, h, want)
			}
			if r.Len() != 0 {
				t.Errorf("op %v length %d: %d bytes after the header", op, length, r.Len())
			}
			if size := ws.HeaderSize(want); len(b) != size {
				t.Errorf("op %v length %d: %d header bytes, want the minimal %d", op, length, len(b), size)
			}
		}
	}
}
