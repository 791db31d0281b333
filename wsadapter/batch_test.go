package wsadapter

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// pieceBatch is a Batch whose frames are lists of pieces, as a broker's
// writer hands them over: headers, a shared body, the trailer.
type pieceBatch struct {
	frames [][][]byte
	text   []bool
}

func (p *pieceBatch) Frames() int { return len(p.frames) }

func (p *pieceBatch) AppendFrame(iov [][]byte, i int) ([][]byte, int, bool) {
	size := 0
	for _, piece := range p.frames[i] {
		iov = append(iov, piece)
		size += len(piece)
	}
	return iov, size, p.text[i]
}

// flat is the batch as WriteFramesText takes it.
func (p *pieceBatch) flat() (out []byte, ends []int) {
	for _, f := range p.frames {
		out = append(out, bytes.Join(f, nil)...)
		ends = append(ends, len(out))
	}
	return out, ends
}

// wireSize is what the batch takes on the wire: a header and the payload
// per frame.
func (p *pieceBatch) wireSize() int {
	out, ends := p.flat()
	n, start := len(out), 0
	for _, end := range ends {
		n += len(appendHeader(nil, ws.OpText, end-start))
		start = end
	}
	return n
}

// sampleBatch has the shapes a broker writes: a small frame in one piece,
// a MESSAGE with a large binary body (NULs in it, 16-bit and 64-bit
// length encodings) between its headers and trailer, an empty frame, a
// heart-beat, and a text frame whose body is borrowed.
func sampleBatch() *pieceBatch {
	binary := bytes.Repeat([]byte("a\x00\xff"), 70000/3)
	mid := bytes.Repeat([]byte("é"), 20000)
	return &pieceBatch{
		frames: [][][]byte{
			{[]byte("RECEIPT\nreceipt-id:1\n\n\x00")},
			{[]byte("MESSAGE\ncontent-length:69999\n\n"), binary, []byte("\x00")},
			{},
			{[]byte("\n")},
			{[]byte("MESSAGE\ncontent-length:40000\n\n"), mid, []byte("\x00")},
		},
		text: []bool{true, false, false, true, true},
	}
}

// WriteBatch puts on the wire exactly what WriteFramesText writes for the
// same frames in one buffer: message headers, opcodes from the caller's
// text flags, payloads in order.
func TestWriteBatchMatchesWriteFramesText(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	b := sampleBatch()
	out, ends := b.flat()
	errc := make(chan error, 1)
	go func() { // ~200 KB: more than the socket buffers may hold
		if err := c.WriteBatch(b); err != nil {
			errc <- err
			return
		}
		errc <- c.WriteFramesText(out, ends, b.text)
	}()
	br := bufio.NewReader(cli)
	viaBatch, viaFlat := make([]byte, b.wireSize()), make([]byte, b.wireSize())
	if _, err := io.ReadFull(br, viaBatch); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(br, viaFlat); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(viaBatch, viaFlat) {
		t.Fatalf("WriteBatch wrote %d bytes that differ from WriteFramesText's", len(viaBatch))
	}
	// And those bytes are the frames, one message each, with the caller's
	// opcodes.
	r := bufio.NewReader(bytes.NewReader(viaBatch))
	start := 0
	for i, end := range ends {
		f := serverFrame(t, r)
		want := ws.OpBinary
		if b.text[i] {
			want = ws.OpText
		}
		if f.Header.OpCode != want || !bytes.Equal(f.Payload, out[start:end]) {
			t.Fatalf("message %d: %v of %d bytes, want %v of %d", i, f.Header.OpCode, len(f.Payload), want, end-start)
		}
		start = end
	}
}

// A peer that reads slowly through a small receive buffer makes the
// vectored write partial many times over; what arrives is still every
// message, whole and in order.
func TestWriteBatchPartialWritesKeepOrder(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	if err := c.NetConn().(*net.TCPConn).SetWriteBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	if err := cli.(*net.TCPConn).SetReadBuffer(16 << 10); err != nil {
		t.Fatal(err)
	}
	b := &pieceBatch{}
	var want []string
	for i := range 40 {
		body := []byte(strings.Repeat(string(rune('A'+i%26)), 3000+i))
		b.frames = append(b.frames, [][]byte{[]byte("MESSAGE\n\n"), body, []byte("\x00")})
		b.text = append(b.text, i%2 == 0)
		want = append(want, "MESSAGE\n\n"+string(body)+"\x00")
	}
	errc := make(chan error, 1)
	go func() { errc <- c.WriteBatch(b) }()
	slow := &slowReader{r: cli, chunk: 1500}
	br := bufio.NewReaderSize(slow, 4096)
	for i, w := range want {
		f := serverFrame(t, br)
		if string(f.Payload) != w || (f.Header.OpCode == ws.OpText) != b.text[i] {
			t.Fatalf("message %d: %v of %d bytes, want %d bytes", i, f.Header.OpCode, len(f.Payload), len(w))
		}
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d reads", slow.reads)
	if slow.reads < 40 {
		t.Fatalf("%d reads: the peer was not slow", slow.reads)
	}
}

// slowReader reads at most chunk bytes at a time, pausing before each.
type slowReader struct {
	r     io.Reader
	chunk int
	reads int
}

func (s *slowReader) Read(p []byte) (int, error) {
	s.reads++
	time.Sleep(100 * time.Microsecond)
	return s.r.Read(p[:min(len(p), s.chunk)])
}

// House style #4: WriteBatch allocates nothing per batch once the
// connection's scratch has grown to the batch size.
func TestWriteBatchAllocs(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	done := drain(cli)
	defer func() {
		_ = c.NetConn().Close()
		<-done
	}()
	b := sampleBatch()
	allocs := testing.AllocsPerRun(50, func() {
		if err := c.WriteBatch(b); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Conn.WriteBatch of %d frames: %v allocs, want 0", b.Frames(), allocs)
	}
}
