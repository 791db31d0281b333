package broker

import "unsafe"

// MinBorrowedBody is the smallest body a batch refers to rather than
// copies (Session.Output). Below it, more entries in a vectored write cost
// more than copying the body next to its headers: the kernel walks one
// iovec per piece, and a MESSAGE becomes three pieces instead of part of
// one. BenchmarkWritevBreakEven (package server: 16 frames a write to a
// loopback socket, the body hot in cache) has copying faster by 27% at
// 256 B and 34% at 1 KiB, and the two even (within noise) from 2 KiB up;
// with fan-out the copies go to as many cold buffers, so borrowing wins
// from there on (BenchmarkFanoutBody, BenchmarkTopicFanoutBody).
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
	buf []byte // owned bytes, in write order
	// pieces are the batch in write order: runs of buf and borrowed bodies.
	// A frame never shares a piece with the next, so a WebSocket writer
	// can put a header between them.
	pieces   []outPiece
	ends     []int  // per frame: its end offset in the batch's byte stream
	lastOf   []int  // per frame: pieces[lastOf[i-1]:lastOf[i]] are its pieces
	text     []bool // per frame: valid UTF-8 (a WebSocket text message)
	run      int    // where in buf the bytes not yet in pieces start
	borrowed int    // bytes referred to in pieces, not in buf
	// flat (AppendOutput, AppendOutputFrames) copies every body and keeps
	// no pieces; withFrames then still records ends and text.
	flat, withFrames bool

	iov     [][]byte // Buffers' slices, reused
	writev  [][]byte // what Buffers hands out: consumed by a vectored write
	flatBuf []byte   // Flat's contiguous copy when bodies are borrowed
}

// outPiece is a run buf[start:end] of the batch's own bytes, or a borrowed
// body (non-nil).
type outPiece struct {
	body       []byte
	start, end int
}

// shrinkAbove is the capacity, in bytes, above which a buffer that a write
// used less than an eighth of is dropped (Done): a quiet connection does
// not keep a burst's buffers, a busy one keeps them.
const shrinkAbove = 64 << 10

// Len is the batch's size in bytes: what is written, borrowed bodies
// included.
func (b *OutputBatch) Len() int { return len(b.buf) + b.borrowed }

// Frames is the number of frames in the batch (a heart-beat counts as one).
func (b *OutputBatch) Frames() int { return len(b.ends) }

// AppendHeartbeat adds a heart-beat (a lone EOL, a text message over
// WebSocket): the driver's, when the connection has been quiet for the
// negotiated interval and Output gave nothing.
func (b *OutputBatch) AppendHeartbeat() {
	b.buf = append(b.buf, '\n')
	b.endFrame(true)
}

// Buffers returns the batch as slices in write order, for one vectored
// write (net.Buffers(*p).WriteTo, through a pointer conversion). Adjacent
// runs of owned bytes are one slice, so n frames with borrowed bodies make
// n+1 slices of owned bytes between the n bodies. The slice pointed to
// belongs to the batch, so the write does not make it escape: a
// net.Buffers write consumes it, and the next call builds it again. Valid
// until the batch is next filled or Done.
func (b *OutputBatch) Buffers() *[][]byte {
	iov := b.iov[:0]
	from, to := 0, -1 // the owned run iov ends with, buf[from:to]; to < 0: none
	for _, p := range b.pieces {
		switch {
		case p.body != nil:
			iov = append(iov, p.body)
			to = -1
		case p.start == to: // continues the last slice (the next frame's first run)
			to = p.end
			iov[len(iov)-1] = b.buf[from:to]
		default:
			from, to = p.start, p.end
			iov = append(iov, b.buf[from:to])
		}
	}
	b.iov = iov
	b.writev = iov
	return &b.writev
}

// AppendFrame appends frame i's pieces to iov and returns it, with the
// frame's length and whether it is valid UTF-8: what a WebSocket writer
// needs to put one message header in front of each frame.
func (b *OutputBatch) AppendFrame(iov [][]byte, i int) (out [][]byte, size int, text bool) {
	first, start := 0, 0
	if i > 0 {
		first, start = b.lastOf[i-1], b.ends[i-1]
	}
	for _, p := range b.pieces[first:b.lastOf[i]] {
		if p.body != nil {
			iov = append(iov, p.body)
		} else {
			iov = append(iov, b.buf[p.start:p.end])
		}
	}
	return iov, b.ends[i] - start, b.text[i]
}

// Flat returns the batch as one contiguous byte slice, with the end offset
// of each frame in it and whether each is valid UTF-8: for a transport
// that cannot write vectors (TLS encrypts a copy anyway). Without borrowed
// bodies that is the batch's own buffer; otherwise the pieces are copied
// into a second buffer, kept for the next time. Valid until the batch is
// next filled or Done.
func (b *OutputBatch) Flat() (out []byte, ends []int, text []bool) {
	if b.borrowed == 0 {
		return b.buf, b.ends, b.text
	}
	flat := b.flatBuf[:0]
	for _, p := range b.pieces {
		if p.body != nil {
			flat = append(flat, p.body...)
		} else {
			flat = append(flat, b.buf[p.start:p.end]...)
		}
	}
	b.flatBuf = flat
	return flat, b.ends, b.text
}

// Done ends a write: the batch lets go of the bodies it borrowed (a quiet
// connection must not keep a message alive) and empties itself. When its
// buffers take over 64 KiB and this write used less than an eighth of
// them, they are dropped: a quiet connection does not keep a burst's
// buffers, a busy one keeps them. The driver calls it after every write,
// and when Output gave nothing.
func (b *OutputBatch) Done() {
	const pieceSize, sliceSize, intSize = int(unsafe.Sizeof(outPiece{})), int(unsafe.Sizeof([]byte(nil))), int(unsafe.Sizeof(0))
	held := cap(b.buf) + cap(b.flatBuf) + cap(b.pieces)*pieceSize + cap(b.iov)*sliceSize + (cap(b.ends)+cap(b.lastOf))*intSize
	used := len(b.buf) + len(b.flatBuf) + len(b.pieces)*pieceSize + len(b.iov)*sliceSize + 2*len(b.ends)*intSize
	b.reset()
	if held > shrinkAbove && used < held/8 {
		b.buf, b.flatBuf, b.pieces, b.iov, b.ends, b.lastOf = nil, nil, nil, nil, nil, nil // text, a byte a frame, stays
	}
}

// reset empties the batch, keeping its buffers but no borrowed body.
func (b *OutputBatch) reset() {
	clear(b.pieces)
	clear(b.iov)
	b.buf, b.flatBuf, b.pieces, b.iov, b.writev = b.buf[:0], b.flatBuf[:0], b.pieces[:0], b.iov[:0], nil
	b.ends, b.lastOf, b.text = b.ends[:0], b.lastOf[:0], b.text[:0]
	b.run, b.borrowed = 0, 0
}

// appendBody adds a MESSAGE's body: copied when the batch is flat or the
// body small, otherwise borrowed as a piece of its own.
func (b *OutputBatch) appendBody(body []byte) {
	if b.flat || len(body) < MinBorrowedBody {
		b.buf = append(b.buf, body...)
		return
	}
	b.closeRun()
	b.pieces = append(b.pieces, outPiece{body: body})
	b.borrowed += len(body)
}

// closeRun makes the owned bytes added since the last piece a piece.
func (b *OutputBatch) closeRun() {
	if len(b.buf) > b.run {
		b.pieces = append(b.pieces, outPiece{start: b.run, end: len(b.buf)})
		b.run = len(b.buf)
	}
}

// endFrame records the end of a frame and whether it is valid UTF-8.
func (b *OutputBatch) endFrame(text bool) {
	if b.flat {
		if b.withFrames {
			b.ends = append(b.ends, len(b.buf))
			b.text = append(b.text, text)
		}
		return
	}
	b.closeRun()
	b.ends = append(b.ends, b.Len())
	b.lastOf = append(b.lastOf, len(b.pieces))
	b.text = append(b.text, text)
}

// framed reports whether the batch records frames (ends and text).
func (b *OutputBatch) framed() bool { return !b.flat || b.withFrames }
