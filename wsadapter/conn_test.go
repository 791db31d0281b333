package wsadapter

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// tcpPair returns both ends of a loopback TCP connection: srv becomes a
// Conn accepting messages up to maxMessage bytes, cli is the raw client
// socket. Both are closed when the test ends.
func tcpPair(t testing.TB, maxMessage int) (*Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cli, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cli.Close()
		_ = srv.Close()
	})
	deadline := time.Now().Add(5 * time.Second) // no test here may hang
	_ = srv.SetDeadline(deadline)
	_ = cli.SetDeadline(deadline)
	return newConn(srv, bufio.NewReader(srv), maxMessage, nil), cli
}

// clientFrame builds a masked client frame; rsv sets RSV bits.
func clientFrame(op ws.OpCode, fin bool, payload []byte) []byte {
	return clientFrameRsv(op, fin, 0, payload)
}

func clientFrameRsv(op ws.OpCode, fin bool, rsv byte, payload []byte) []byte {
	f := ws.NewFrame(op, fin, append([]byte(nil), payload...))
	f.Header.Rsv = rsv
	f = ws.MaskFrameInPlace(f)
	b, err := ws.CompileFrame(f)
	if err != nil {
		panic(err)
	}
	return b
}

// unmaskedFrame builds a frame without the MASK bit, as only a server may.
func unmaskedFrame(op ws.OpCode, payload []byte) []byte {
	return append(appendHeader(nil, op, len(payload)), payload...)
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func write(t testing.TB, c net.Conn, frames ...[]byte) {
	t.Helper()
	if _, err := c.Write(bytes.Join(frames, nil)); err != nil {
		t.Fatal(err)
	}
}

// readN reads exactly n STOMP bytes from c in reads of at most chunk bytes.
func readN(t testing.TB, c *Conn, n, chunk int) []byte {
	t.Helper()
	out := make([]byte, 0, n)
	buf := make([]byte, chunk)
	for len(out) < n {
		k, err := c.Read(buf[:min(chunk, n-len(out))])
		out = append(out, buf[:k]...)
		if err != nil {
			t.Fatalf("after %d of %d bytes: %v", len(out), n, err)
		}
	}
	return out
}

// serverFrame reads one frame the Conn wrote.
func serverFrame(t testing.TB, br *bufio.Reader) ws.Frame {
	t.Helper()
	f, err := ws.ReadFrame(br)
	if err != nil {
		t.Fatalf("reading the server's frame: %v", err)
	}
	if f.Header.Masked {
		t.Errorf("server frame %v is masked; RFC 6455: a server MUST NOT mask", f.Header.OpCode)
	}
	if !f.Header.Fin || f.Header.Rsv != 0 {
		t.Errorf("server frame %v: fin %v rsv %d, want fin and no RSV bits", f.Header.OpCode, f.Header.Fin, f.Header.Rsv)
	}
	return f
}

// Payloads come out unmasked whatever the read size, across the 7-, 16-
// and 64-bit length encodings, text and binary, and message boundaries are
// not preserved (the STOMP parser finds the frames).
func TestConnReadUnmasks(t *testing.T) {
	small := []byte("CONNECT\naccept-version:1.2\n\n\x00")
	medium := []byte(strings.Repeat("SEND\ndestination:/queue/a\n\nhello\x00", 20)) // 16-bit length
	large := make([]byte, 70000)                                                    // 64-bit length
	for i := range large {
		large[i] = byte(i * 7)
	}
	want := bytes.Join([][]byte{small, medium, large}, nil)
	for _, chunk := range []int{1, 7, 4096, 1 << 17} {
		c, cli := tcpPair(t, 1<<20)
		go func() { // the large frame may not fit in the socket buffers
			_, _ = cli.Write(bytes.Join([][]byte{
				clientFrame(ws.OpText, true, small),
				clientFrame(ws.OpText, true, medium),
				clientFrame(ws.OpBinary, true, large),
			}, nil))
		}()
		got := readN(t, c, len(want), chunk)
		if !bytes.Equal(got, want) {
			t.Fatalf("read size %d: payloads differ from what was sent", chunk)
		}
	}
}

// RFC 6455, section 5.4: "Control frames MAY be injected in the middle of a
// fragmented message." A ping in the middle is answered with a pong
// carrying its payload (5.5.3: "MUST have identical 'Application data'");
// a pong is ignored; the fragments read as one stream.
func TestConnReadFragmentsWithControlFrames(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	write(t, cli,
		clientFrame(ws.OpText, false, []byte("SEND\ndesti")),
		clientFrame(ws.OpPing, true, []byte("ping-1")),
		clientFrame(ws.OpContinuation, false, []byte("nation:/queue/a\n\n")),
		clientFrame(ws.OpPong, true, []byte("unsolicited")),
		clientFrame(ws.OpPing, true, nil),
		clientFrame(ws.OpContinuation, false, nil),
		clientFrame(ws.OpContinuation, true, []byte("body\x00")),
		clientFrame(ws.OpBinary, true, []byte("\n")),
	)
	want := "SEND\ndestination:/queue/a\n\nbody\x00\n"
	if got := readN(t, c, len(want), 64); string(got) != want {
		t.Fatalf("read %q, want %q", got, want)
	}
	br := bufio.NewReader(cli)
	for _, payload := range []string{"ping-1", ""} {
		f := serverFrame(t, br)
		if f.Header.OpCode != ws.OpPong || string(f.Payload) != payload {
			t.Fatalf("got %v %q, want a pong with %q", f.Header.OpCode, f.Payload, payload)
		}
	}
}

// RFC 6455, section 5.5.1: a close frame is answered with a close frame
// echoing the status code; Read ends with io.EOF; nothing can be written
// afterwards.
func TestConnReadClose(t *testing.T) {
	tests := []struct {
		name     string
		payload  []byte
		wantCode uint16
	}{
		{"with code and reason", closePayload(1000, "bye"), 1000},
		{"going away", closePayload(1001, ""), 1001},
		{"application code", closePayload(4000, "app"), 4000},
		{"empty payload", nil, 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cli := tcpPair(t, 1<<20)
			write(t, cli, clientFrame(ws.OpText, true, []byte("x")), clientFrame(ws.OpClose, true, tt.payload))
			buf := make([]byte, 16)
			if n, err := c.Read(buf); n != 1 || err != nil {
				t.Fatalf("Read = %d, %v; want the one data byte", n, err)
			}
			if n, err := c.Read(buf); n != 0 || err != io.EOF {
				t.Fatalf("Read after close = %d, %v; want 0, io.EOF", n, err)
			}
			f := serverFrame(t, bufio.NewReader(cli))
			if f.Header.OpCode != ws.OpClose || len(f.Payload) < 2 {
				t.Fatalf("got %v %q, want a close frame with a code", f.Header.OpCode, f.Payload)
			}
			if code := binary.BigEndian.Uint16(f.Payload); code != tt.wantCode {
				t.Errorf("close code %d, want %d", code, tt.wantCode)
			}
			if err := c.WriteFrames([]byte("late"), []int{4}); !errors.Is(err, ErrClosed) {
				t.Errorf("WriteFrames after the close handshake: %v, want ErrClosed", err)
			}
		})
	}
}

// Every violation of RFC 6455 the reader must catch ends the stream with a
// ProtocolError naming the close code to send. The oversized cases send no
// payload at all: the limit applies before any payload byte is read.
func TestConnReadViolations(t *testing.T) {
	const maxMessage = 1024
	hugeHeader := []byte{0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4} // 4 GiB, no payload
	tooBig := []byte{0x81, 0x80 | 126, 0x04, 0x01, 1, 2, 3, 4}                 // 1025 bytes, no payload
	tests := []struct {
		name string
		wire [][]byte
		code CloseCode
	}{
		{"unmasked client frame", [][]byte{unmaskedFrame(ws.OpText, []byte("SEND\n"))}, CloseProtocolError},
		{"RSV1 without an extension", [][]byte{clientFrameRsv(ws.OpText, true, 4, []byte("x"))}, CloseProtocolError},
		{"RSV3 on a ping", [][]byte{clientFrameRsv(ws.OpPing, true, 1, nil)}, CloseProtocolError},
		{"reserved data opcode 0x3", [][]byte{clientFrame(ws.OpCode(0x3), true, []byte("x"))}, CloseProtocolError},
		{"reserved control opcode 0xB", [][]byte{clientFrame(ws.OpCode(0xb), true, []byte("x"))}, CloseProtocolError},
		{"continuation without a message", [][]byte{clientFrame(ws.OpContinuation, true, []byte("x"))}, CloseProtocolError},
		{"new message inside a fragmented one", [][]byte{
			clientFrame(ws.OpText, false, []byte("a")), clientFrame(ws.OpBinary, true, []byte("b")),
		}, CloseProtocolError},
		{"fragmented ping", [][]byte{clientFrame(ws.OpPing, false, []byte("x"))}, CloseProtocolError},
		{"ping over 125 bytes", [][]byte{clientFrame(ws.OpPing, true, bytes.Repeat([]byte("p"), 126))}, CloseProtocolError},
		{"close with a one-byte payload", [][]byte{clientFrame(ws.OpClose, true, []byte{3})}, CloseProtocolError},
		{"close reason not UTF-8", [][]byte{clientFrame(ws.OpClose, true, closePayload(1000, "\xff"))}, CloseProtocolError},
		// RFC 6455, 7.4.1: 1005 and 1006 "MUST NOT be set as a status code
		// in a Close control frame by an endpoint"; 7.4.2: 0-999 are not
		// used, 1016-2999 are reserved. Echoing them would be sending them.
		{"close code 1005", [][]byte{clientFrame(ws.OpClose, true, closePayload(1005, ""))}, CloseProtocolError},
		{"close code 1006", [][]byte{clientFrame(ws.OpClose, true, closePayload(1006, ""))}, CloseProtocolError},
		{"close code 999", [][]byte{clientFrame(ws.OpClose, true, closePayload(999, ""))}, CloseProtocolError},
		{"close code 2000", [][]byte{clientFrame(ws.OpClose, true, closePayload(2000, ""))}, CloseProtocolError},
		{"64-bit length with the MSB set", [][]byte{{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}}, CloseProtocolError},
		{"message over the limit, header only", [][]byte{tooBig}, CloseTooBig},
		{"4 GiB announced, header only", [][]byte{hugeHeader}, CloseTooBig},
		{"fragments adding up past the limit", [][]byte{
			clientFrame(ws.OpBinary, false, bytes.Repeat([]byte("a"), 600)),
			{0x00, 0x80 | 126, 0x02, 0x58, 1, 2, 3, 4}, // 600 more announced, none sent
		}, CloseTooBig},
		{"invalid UTF-8 in text", [][]byte{clientFrame(ws.OpText, true, []byte("SEND\n\n\xff\x00"))}, CloseInvalidData},
		{"text message ends inside a code point", [][]byte{clientFrame(ws.OpText, true, []byte("ab\xe2\x82"))}, CloseInvalidData},
		{"fragmented text ends inside a code point", [][]byte{
			clientFrame(ws.OpText, false, []byte("ab\xe2")), clientFrame(ws.OpContinuation, true, []byte("\x82")),
		}, CloseInvalidData},
		{"code point split across two messages", [][]byte{
			clientFrame(ws.OpText, true, []byte("a\xe2\x82")), clientFrame(ws.OpText, true, []byte("\xacb")),
		}, CloseInvalidData},
		{"fragmented text ends inside a code point (empty last fragment)", [][]byte{
			clientFrame(ws.OpText, false, []byte("a\xe2")), clientFrame(ws.OpContinuation, true, nil),
		}, CloseInvalidData},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, cli := tcpPair(t, maxMessage)
			write(t, cli, tt.wire...)
			buf := make([]byte, 4096)
			var err error
			for range 10 { // leading valid bytes may come first
				if _, err = c.Read(buf); err != nil {
					break
				}
			}
			var pe *ProtocolError
			if !errors.As(err, &pe) {
				t.Fatalf("Read: %v, want a ProtocolError with close code %d", err, tt.code)
			}
			if pe.Code != tt.code {
				t.Fatalf("close code %d (%s), want %d", pe.Code, pe.Reason, tt.code)
			}
		})
	}
}

// A code point split across fragments of one text message is valid
// (RFC 6455, 8.1: the whole message must be UTF-8, not each fragment),
// however it is cut: every split into two and three fragments.
func TestConnReadUTF8AcrossFragments(t *testing.T) {
	const s = "a€é😀z"
	var failed []string
	try := func(cuts ...int) {
		c, cli := tcpPair(t, 1<<20)
		var wire [][]byte
		start := 0
		for i, end := range append(cuts, len(s)) {
			op := ws.OpContinuation
			if i == 0 {
				op = ws.OpText
			}
			wire = append(wire, clientFrame(op, end == len(s), []byte(s[start:end])))
			start = end
		}
		write(t, cli, wire...)
		got := make([]byte, 0, len(s))
		buf := make([]byte, 64)
		for len(got) < len(s) {
			n, err := c.Read(buf)
			got = append(got, buf[:n]...)
			if err != nil {
				failed = append(failed, fmt.Sprintf("fragments %q: %v", splitAt(s, cuts), err))
				return
			}
		}
		if string(got) != s {
			t.Fatalf("cuts %v: read %q", cuts, got)
		}
	}
	for i := 1; i < len(s); i++ {
		try(i)
		for j := i + 1; j < len(s); j++ {
			try(i, j)
		}
	}
	if len(failed) > 0 {
		t.Errorf("%d of the splits of %q refused; first: %s", len(failed), s, failed[0])
	}
}

// splitAt cuts s at the given offsets.
func splitAt(s string, cuts []int) []string {
	var out []string
	start := 0
	for _, c := range append(cuts, len(s)) {
		out = append(out, s[start:c])
		start = c
	}
	return out
}

// Each STOMP frame becomes one WebSocket message: text when the frame is
// valid UTF-8, binary otherwise; a heart-beat is a one-byte text message;
// the length encoding follows the frame's size.
func TestConnWriteFrames(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	large := append([]byte("MESSAGE\n\n"), bytes.Repeat([]byte("é"), 40000)...)
	large = append(large, 0)
	frames := [][]byte{
		[]byte("MESSAGE\ndestination:/topic/a\n\nhéllo\x00"),
		[]byte("MESSAGE\ndestination:/topic/a\ncontent-length:2\n\n\xff\x00\x00"),
		[]byte("\n"),
		[]byte("MESSAGE\n\n" + strings.Repeat("x", 200) + "\x00"),
		large,
	}
	wantOps := []ws.OpCode{ws.OpText, ws.OpBinary, ws.OpText, ws.OpText, ws.OpText}
	var out []byte
	var ends []int
	for _, f := range frames {
		out = append(out, f...)
		ends = append(ends, len(out))
	}
	errc := make(chan error, 1)
	go func() { errc <- c.WriteFrames(out, ends) }() // 80 KB may not fit in the socket buffers
	br := bufio.NewReader(cli)
	for i, want := range frames {
		f := serverFrame(t, br)
		if f.Header.OpCode != wantOps[i] || !bytes.Equal(f.Payload, want) {
			t.Fatalf("message %d: %v of %d bytes, want %v of %d bytes", i, f.Header.OpCode, len(f.Payload), wantOps[i], len(want))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	// A smaller batch after a larger one reuses the buffers and still writes
	// exactly its own frames.
	if err := c.WriteFrames([]byte("A\x00B\x00"), []int{2, 4}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"A\x00", "B\x00"} {
		if f := serverFrame(t, br); string(f.Payload) != want {
			t.Fatalf("got %q, want %q", f.Payload, want)
		}
	}
	_ = cli.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := br.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Fatalf("%d stray bytes after the last message", n)
	}
}

// Close sends one close frame with the code and the reason (cut to fit
// the 125-byte control frame limit); later calls and writes do nothing.
func TestConnClose(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	long := strings.Repeat("r", 200)
	if err := c.Close(CloseTooBig, long); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(CloseNormal, "again"); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := c.WriteFrames([]byte("x"), []int{1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteFrames after Close: %v, want ErrClosed", err)
	}
	_ = c.NetConn().Close()
	br := bufio.NewReader(cli)
	f := serverFrame(t, br)
	if f.Header.OpCode != ws.OpClose || len(f.Payload) != 125 {
		t.Fatalf("got %v with %d bytes, want a 125-byte close frame", f.Header.OpCode, len(f.Payload))
	}
	if code := binary.BigEndian.Uint16(f.Payload); code != uint16(CloseTooBig) || string(f.Payload[2:]) != long[:123] {
		t.Fatalf("close %d %q", code, f.Payload[2:])
	}
	if _, err := ws.ReadFrame(br); err != io.EOF {
		t.Fatalf("after the close frame: %v, want io.EOF (exactly one close frame)", err)
	}
}

// A ping that arrives after Close has been sent gets no pong (RFC 6455,
// 5.5.1: after sending a close frame, an endpoint sends no more data);
// Read reports the stream as over.
func TestConnNoPongAfterClose(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	if err := c.Close(CloseGoingAway, ""); err != nil {
		t.Fatal(err)
	}
	write(t, cli, clientFrame(ws.OpPing, true, []byte("late")))
	if _, err := c.Read(make([]byte, 8)); err == nil {
		t.Fatal("Read after a ping on a closed connection: no error")
	}
	_ = c.NetConn().Close()
	br := bufio.NewReader(cli)
	if f := serverFrame(t, br); f.Header.OpCode != ws.OpClose {
		t.Fatalf("got %v, want only the close frame", f.Header.OpCode)
	}
	if f, err := ws.ReadFrame(br); err != io.EOF {
		t.Fatalf("after the close frame: %v %v, want io.EOF", f.Header.OpCode, err)
	}
}

// TestWriteFramesTextTakesTheCallersWord: with text flags the opcode is
// the caller's answer, not a scan's (the session knows each frame's
// answer without scanning it).
func TestWriteFramesTextTakesTheCallersWord(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	frames := [][]byte{[]byte("RECEIPT\n\n\x00"), []byte("MESSAGE\n\nplain\x00"), []byte("MESSAGE\n\n\xff\x00")}
	text := []bool{true, false, false}
	var out []byte
	var ends []int
	for _, f := range frames {
		out = append(out, f...)
		ends = append(ends, len(out))
	}
	if err := c.WriteFramesText(out, ends, text); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(cli)
	for i, want := range []ws.OpCode{ws.OpText, ws.OpBinary, ws.OpBinary} {
		if f := serverFrame(t, br); f.Header.OpCode != want || !bytes.Equal(f.Payload, frames[i]) {
			t.Fatalf("message %d: %v %q, want %v %q", i, f.Header.OpCode, f.Payload, want, frames[i])
		}
	}
}
