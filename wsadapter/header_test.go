package wsadapter

import (
	"bufio"
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
			br := bufio.NewReader(bytes.NewReader(append(append([]byte(nil), tt.wire...), trailer...)))
			got, err := readHeader(br)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("readHeader = %+v, want %+v", got, tt.want)
			}
			// Exactly the header was consumed.
			rest, _ := io.ReadAll(br)
			if string(rest) != trailer {
				t.Fatalf("after the header %q is left, want %q", rest, trailer)
			}
		})
	}
}

// readHeader agrees with gobwas/ws's own encoder for every length class.
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
			got, err := readHeader(bufio.NewReader(&buf))
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
	_, err := readHeader(bufio.NewReader(bytes.NewReader(wire)))
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CloseProtocolError {
		t.Fatalf("err = %v, want a ProtocolError with close code 1002", err)
	}
}

// A header cut short by the end of the stream is an error, not a frame.
func TestReadHeaderTruncated(t *testing.T) {
	full := []byte{0x82, 0x80 | 126, 0x01, 0x00, 1, 2, 3, 4}
	for n := range len(full) {
		_, err := readHeader(bufio.NewReader(bytes.NewReader(full[:n])))
		if err == nil {
			t.Errorf("%d of %d header bytes: no error", n, len(full))
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
