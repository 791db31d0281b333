package broker

import "unsafe"

// MinBorrowedBody is the smallest body a batch refers to rather than
// copies (Session.Output). Below it, more entries in a vectored write cost
// more than copying the body next to its headers: the kernel walks one
// iovec per piece, and a MESSAGE becomes three pieces instead of part of
// one. BenchmarkWritevBreakEven (package server: 16 frames a write to a
// loopback socket, the body hot in cache) has copying faster by 27% at
// 256 B and 34% at 1 KiB, and the two even (within noise) from 2 KiB up,
// so the threshold sits where copying stops winning. With fan-out the
// copies go to as many buffers, and borrowing saves more than that
// benchmark shows: 23% of the broker's time per delivery at 16 KiB and 48%
// at 64 KiB (BenchmarkFanoutBody), more end to end (BenchmarkTopicFanoutBody).
const MinBorrowedBody = 2 << 10

// OutputBatch is one write's worth of frames, filled by Session.Output and
// written by the connection driver, which reuses one batch across writes:
// in steady state it allocates nothing.
//
// Control frames, the header lines of each MESSAGE and bodies under
// MinBorrowedBody are copied into the batch's own buffer. A larger body is
// not: the batch refers to the Message's body, which every delivery of the
// message shares and nobody modifies after SEND (Message.Body), and the
// driver writes headers, body and trailer as separate pieces of one
// vectored write (Buffers for a byte stream, AppendFrame per WebSocket
// message). A 64 KiB body fanned out to 1000 subscribers is then copied by
// the kernel into 1000 sockets, not first by the broker into 1000 buffers.
//
// A batch is not safe for concurrent use: it belongs to the connection's
// writer, like Session.Output itself.
type OutputBatch struct {
	// buf holds the batch's own bytes in write order; each borrowed body
	// goes between buf[:at] and buf[at:] for its borrow's at.
	buf      []byte
	frames   []outFrame // per frame, in order
	borrows  []borrow   // the bodies referred to, in order
	borrowed int        // their total length
	// flat (AppendOutput, AppendOutputFrames) copies every body and
	// records no frames; withFrames then appends each frame's end offset
	// in buf to ends and whether it is UTF-8 to text.
	flat, withFrames bool
	ends             []int  // flat mode's, or Flat's scratch
	text             []bool // flat mode's, or Flat's scratch

	iov     [][]byte // Buffers' slices, reused
	writev  [][]byte // what Buffers hands out: consumed by a vectored write
	flatBuf []byte   // Flat's contiguous copy when bodies are borrowed
}

// outFrame is where a frame ends: in buf, and in borrows.
type outFrame struct {
	bufEnd     int
	borrowsEnd int32
	text       bool // valid UTF-8 (a WebSocket text message)
}

// borrow is a body referred to, not copied: it goes at buf offset at.
type borrow struct {
	at   int
	body []byte
}

// shrinkAbove is the size above which a buffer that a write used less
// than an eighth of is dropped (Done).
const shrinkAbove = 64 << 10

// Len is the batch's size in bytes: what is written, borrowed bodies
// included.
func (b *OutputBatch) Len() int { return len(b.buf) + b.borrowed }

// Frames is the number of frames in the batch (a heart-beat counts as one).
func (b *OutputBatch) Frames() int { return len(b.frames) }

// AppendHeartbeat adds a heart-beat (a lone EOL, a text message over
// WebSocket): the driver's, when the connection has been quiet for the
// negotiated interval and Output gave nothing.
func (b *OutputBatch) AppendHeartbeat() {
	b.buf = append(b.buf, '\n')
	b.endFrame(true)
}

// Contiguous returns the batch's bytes when it borrowed no body: then
// they are all in its own buffer, for one plain write. ok is false
// otherwise. Valid until the batch is next filled or Done.
func (b *OutputBatch) Contiguous() (out []byte, ok bool) {
	return b.buf, len(b.borrows) == 0
}

// Buffers returns the batch as slices in write order, for one vectored
// write (net.Buffers(*p).WriteTo, through a pointer conversion): the
// batch's own bytes between borrowed bodies, so n borrowed bodies make at
// most 2n+1 slices, and a batch without any one slice. The slice pointed
// to belongs to the batch, so the write does not make it escape: a
// net.Buffers write consumes it, and the next call builds it again. Valid
// until the batch is next filled or Done.
func (b *OutputBatch) Buffers() *[][]byte {
	b.iov = b.appendPieces(b.iov[:0], 0, len(b.buf), b.borrows)
	b.writev = b.iov
	return &b.writev
}

// appendPieces appends buf[from:to] with the bodies in borrows (all
// within it) in their places.
func (b *OutputBatch) appendPieces(iov [][]byte, from, to int, borrows []borrow) [][]byte {
	for _, br := range borrows {
		if br.at > from {
			iov = append(iov, b.buf[from:br.at])
		}
		iov = append(iov, br.body)
		from = br.at
	}
	if to > from {
		iov = append(iov, b.buf[from:to])
	}
	return iov
}

// AppendFrame appends frame i's pieces to iov and returns it, with the
// frame's length and whether it is valid UTF-8: what a WebSocket writer
// needs to put one message header in front of each frame.
func (b *OutputBatch) AppendFrame(iov [][]byte, i int) (out [][]byte, size int, text bool) {
	from, first := 0, 0
	if i > 0 {
		from, first = b.frames[i-1].bufEnd, int(b.frames[i-1].borrowsEnd)
	}
	f := b.frames[i]
	borrows := b.borrows[first:f.borrowsEnd]
	size = f.bufEnd - from
	for _, br := range borrows {
		size += len(br.body)
	}
	return b.appendPieces(iov, from, f.bufEnd, borrows), size, f.text
}

// Flat returns the batch as one contiguous byte slice, with the end offset
// of each frame in it and whether each is valid UTF-8: for a transport
// that cannot write vectors (TLS encrypts a copy anyway). Without borrowed
// bodies the bytes are the batch's own buffer; otherwise they are copied
// into a second one, kept for the next time. Valid until the batch is next
// filled or Done.
func (b *OutputBatch) Flat() (out []byte, ends []int, text []bool) {
	ends, text = b.ends[:0], b.text[:0]
	borrowed, n := 0, 0
	for _, f := range b.frames {
		// A frame ends later by the bodies borrowed up to its end.
		for ; n < int(f.borrowsEnd); n++ {
			borrowed += len(b.borrows[n].body)
		}
		ends = append(ends, f.bufEnd+borrowed)
		text = append(text, f.text)
	}
	b.ends, b.text = ends, text
	if len(b.borrows) == 0 {
		return b.buf, ends, text
	}
	flat := b.flatBuf[:0]
	from := 0
	for _, br := range b.borrows {
		flat = append(append(flat, b.buf[from:br.at]...), br.body...)
		from = br.at
	}
	b.flatBuf = append(flat, b.buf[from:]...)
	return b.flatBuf, ends, text
}

// Done ends a write: the batch lets go of the bodies it borrowed (a quiet
// connection must not keep a message alive) and empties itself. A buffer
// over 64 KiB that this write used less than an eighth of is dropped,
// with the per-frame slices, as the writer always did: a quiet connection
// does not keep a burst's buffers, a busy one keeps them. The frames and
// borrows of a burst of large bodies (few bytes of its own, many frames)
// are judged the same way. The driver calls it after every write, and
// when Output gave nothing.
func (b *OutputBatch) Done() {
	const frameSize, borrowSize = int(unsafe.Sizeof(outFrame{})), int(unsafe.Sizeof(borrow{}))
	quiet := func(used, held int) bool { return held > shrinkAbove && used < held/8 }
	drop := quiet(len(b.buf), cap(b.buf)) || quiet(len(b.frames)*frameSize, cap(b.frames)*frameSize) ||
		quiet(len(b.borrows)*borrowSize, cap(b.borrows)*borrowSize)
	dropFlat := quiet(len(b.flatBuf), cap(b.flatBuf))
	b.reset()
	if drop {
		b.buf, b.frames, b.borrows, b.iov, b.ends = nil, nil, nil, nil, nil // text, a byte a frame, stays
	}
	if dropFlat {
		b.flatBuf = nil
	}
}

// reset empties the batch, keeping its buffers but no borrowed body.
func (b *OutputBatch) reset() {
	clear(b.borrows)
	clear(b.iov)
	b.buf, b.frames, b.borrows, b.borrowed = b.buf[:0], b.frames[:0], b.borrows[:0], 0
	b.iov, b.writev, b.flatBuf = b.iov[:0], nil, b.flatBuf[:0]
	b.ends, b.text = b.ends[:0], b.text[:0]
}

// appendBody adds a MESSAGE's body: copied when the batch is flat or the
// body small, otherwise borrowed.
func (b *OutputBatch) appendBody(body []byte) {
	if b.flat || len(body) < MinBorrowedBody {
		b.buf = append(b.buf, body...)
		return
	}
	b.borrows = append(b.borrows, borrow{at: len(b.buf), body: body})
	b.borrowed += len(body)
}

// endFrame records the end of a frame and whether it is valid UTF-8.
func (b *OutputBatch) endFrame(text bool) {
	switch {
	case !b.flat:
		b.frames = append(b.frames, outFrame{bufEnd: len(b.buf), borrowsEnd: int32(len(b.borrows)), text: text})
	case b.withFrames:
		b.ends = append(b.ends, len(b.buf))
		b.text = append(b.text, text)
	}
}

// framed reports whether the batch records frames (ends and text).
func (b *OutputBatch) framed() bool { return !b.flat || b.withFrames }
