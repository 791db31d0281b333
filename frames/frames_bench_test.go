package frames_test

import (
	"bytes"
	"io"
	"strconv"
	"testing"

	"github.com/go-stomp/stomp/v3/frame"

	"github.com/stompbox/stompbox/frames"
)

// The benchmarks measure the steady state of one connection: parser, reader,
// handler and buffers are built once, outside the loop, and each op handles
// the same wire bytes again. Names line up with go-stomp's so that
// BenchmarkParse/send-128B compares with BenchmarkGoStompRead/send-128B; the
// numbers go in docs/benchmarks.md.

// sendFrame is a typical SEND: five headers, content-length and a body of n
// bytes. It holds no escape sequences, which matters: Parse decodes escapes in
// place, and with none to decode it rewrites every byte with itself, so the
// same input can be parsed again without refreshing it from a pristine copy.
func sendFrame(n int) []byte {
	f := "SEND\n" +
		"destination:/queue/orders.eu-west\n" +
		"content-type:application/json\n" +
		"receipt:r-4711\n" +
		"persistent:true\n" +
		"x-trace-id:4bf92f3577b34da6a3ce929d0e0e4736\n" +
		"content-length:" + strconv.Itoa(n) + "\n\n"
	return append(append([]byte(f), bytes.Repeat([]byte("x"), n)...), 0)
}

var readCases = []struct {
	name   string
	input  []byte
	frames int // frames in input: one op reads them all
}{
	{"send-128B", sendFrame(128), 1},
	{"send-4KiB", sendFrame(4096), 1},
	{"64-frames", bytes.Repeat(sendFrame(128), 64), 64},
}

// countingHandler does nothing but count, so a benchmark can check it parsed
// what it claims to have parsed.
type countingHandler struct{ frames int }

func (h *countingHandler) HandleFrame(*frames.Frame) error { h.frames++; return nil }
func (h *countingHandler) HandleHeartbeat() error          { return nil }

func BenchmarkParse(b *testing.B) {
	for _, bc := range readCases {
		b.Run(bc.name, func(b *testing.B) {
			p := frames.NewParser(frames.Limits{})
			h := &countingHandler{}
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.input)))
			ops := 0
			for b.Loop() {
				if err := p.Parse(bc.input, h); err != nil {
					b.Fatal(err)
				}
				ops++
			}
			if h.frames != ops*bc.frames || p.Buffered() != 0 {
				b.Fatalf("parsed %d frames in %d ops (%d buffered), want %d per op", h.frames, ops, p.Buffered(), bc.frames)
			}
		})
	}
}

// cyclicReader returns data over and over, never EOF, without allocating, so
// a go-stomp Reader built once can read the same frames forever.
type cyclicReader struct {
	data []byte
	off  int
}

func (r *cyclicReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

func BenchmarkGoStompRead(b *testing.B) {
	for _, bc := range readCases {
		b.Run(bc.name, func(b *testing.B) {
			r := frame.NewReader(&cyclicReader{data: bc.input})
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.input)))
			for b.Loop() {
				for range bc.frames {
					f, err := r.Read()
					if err != nil || f == nil || len(f.Body) != 128 && len(f.Body) != 4096 {
						b.Fatalf("read %v, %v", f, err)
					}
				}
			}
		})
	}
}

// messageFrame is what a broker delivers: a MESSAGE with the headers STOMP
// 1.2 requires, a content-type and a 128-byte body. escaped puts a colon and a
// backslash into two values, so the encoder takes its escaping path.
func messageFrame(escaped bool) frames.Frame {
	dest, id := "/queue/orders.eu-west", "ID:broker-1-42-7"
	if escaped {
		dest, id = "/queue/orders:eu-west", `ID\broker-1-42-7`
	}
	h := func(k, v string) frames.Header { return frames.Header{Key: []byte(k), Value: []byte(v)} }
	return frames.Frame{
		Command: frames.CmdMessage,
		Headers: []frames.Header{
			h("destination", dest),
			h("message-id", id),
			h("subscription", "sub-0"),
			h("content-type", "application/json"),
			h("ack", "ack-42-7"),
		},
		Body: bytes.Repeat([]byte("x"), 128),
	}
}

var writeCases = []struct {
	name    string
	escaped bool
}{
	{"message", false},
	{"message-escaped", true},
}

func BenchmarkEncode(b *testing.B) {
	for _, bc := range writeCases {
		b.Run(bc.name, func(b *testing.B) {
			f := messageFrame(bc.escaped)
			dst := frames.AppendFrame(nil, frames.V12, &f) // sized once, reused below
			b.ReportAllocs()
			b.SetBytes(int64(len(dst)))
			for b.Loop() {
				dst = frames.AppendFrame(dst[:0], frames.V12, &f)
			}
		})
	}
}

// BenchmarkGoStompWrite encodes the same frames with go-stomp. Its Writer does
// not add content-length itself, so the frame carries one, as ours does.
func BenchmarkGoStompWrite(b *testing.B) {
	for _, bc := range writeCases {
		b.Run(bc.name, func(b *testing.B) {
			mf := messageFrame(bc.escaped)
			f := frame.New(frame.MESSAGE)
			for _, h := range mf.Headers {
				f.Header.Add(string(h.Key), string(h.Value))
			}
			f.Header.Add(frame.ContentLength, strconv.Itoa(len(mf.Body)))
			f.Body = mf.Body
			w := frame.NewWriter(io.Discard)
			b.ReportAllocs()
			b.SetBytes(int64(len(frames.AppendFrame(nil, frames.V12, &mf))))
			for b.Loop() {
				if err := w.Write(f); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
