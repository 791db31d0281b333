package broker

import (
	"bytes"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stompbox/stompbox/frames"
)

// batchBodies are bodies on both sides of MinBorrowedBody: empty, small,
// one byte short, exactly at it, and large ones, binary with NULs and
// text that is not ASCII.
func batchBodies() []string {
	return []string{
		"",
		"small",
		strings.Repeat("s", MinBorrowedBody-1),
		strings.Repeat("b", MinBorrowedBody),
		strings.Repeat("\x00\xff\x01", 16<<10/3),
		strings.Repeat("é", 32<<10),
	}
}

// joined concatenates slices.
func joined(iov [][]byte) []byte { return bytes.Join(iov, nil) }

// Output's batch holds exactly the bytes AppendOutputFrames writes, in
// every form a driver takes it (Buffers for a writev, AppendFrame per
// WebSocket message, Flat), with the same frame ends and text flags; only
// bodies of MinBorrowedBody bytes or more are borrowed, and every
// subscriber's batch borrows the same body. Two subscribers with the same
// subscription ids get byte-identical MESSAGE frames, so one session's
// output taken the old way is the other's expected output.
func TestOutputBatchMatchesAppendOutputFrames(t *testing.T) {
	for _, v := range []string{"1.0", "1.1", "1.2"} {
		t.Run("stomp"+v, func(t *testing.T) {
			b := New(Config{})
			flat, batched, other := newClient(t, b), newClient(t, b), newClient(t, b)
			for _, c := range []*client{flat, batched, other} {
				c.connect("accept-version:" + v)
				c.mustSend(frames.CmdSubscribe, "", "id:auto", "destination:/topic/t")
				c.mustSend(frames.CmdSubscribe, "", "id:cli", "destination:/topic/t", "ack:client", "receipt:r\xff")
			}
			pub := newClient(t, b)
			pub.connect("accept-version:" + v)
			bodies := batchBodies()
			for _, body := range bodies {
				pub.mustSend(frames.CmdSend, body, "destination:/topic/t", "x-odd:a:b")
			}

			out, ends, text, _ := flat.s.AppendOutputFrames([]byte("prefix"), nil, nil)
			out, ends = out[len("prefix"):], slices.Clone(ends)
			for i := range ends {
				ends[i] -= len("prefix")
			}
			var batch, otherBatch OutputBatch
			batched.s.Output(&batch)
			other.s.Output(&otherBatch)

			wantFrames := 1 + 2*len(bodies) // a RECEIPT, then two deliveries of each body
			if batch.Frames() != len(ends) || len(ends) != wantFrames {
				t.Fatalf("%d frames in the batch, %d taken flat, want %d", batch.Frames(), len(ends), wantFrames)
			}
			if batch.Len() != len(out) {
				t.Fatalf("batch of %d bytes, flat output of %d", batch.Len(), len(out))
			}
			fOut, fEnds, fText := batch.Flat()
			if !bytes.Equal(fOut, out) || !slices.Equal(fEnds, ends) || !slices.Equal(fText, text) {
				t.Fatal("Flat differs from AppendOutputFrames")
			}
			iov := *batch.Buffers()
			if !bytes.Equal(joined(iov), out) {
				t.Fatal("Buffers differ from AppendOutputFrames")
			}
			// Owned runs are merged: one slice between two borrowed bodies.
			big := 0
			for _, body := range bodies {
				if len(body) >= MinBorrowedBody {
					big += 2 // two subscriptions
				}
			}
			if len(iov) != 2*big+1 {
				t.Fatalf("Buffers gave %d slices for %d borrowed bodies, want %d", len(iov), big, 2*big+1)
			}
			var frameIOV [][]byte
			start := 0
			for i, end := range ends {
				var size int
				var isText bool
				frameIOV, size, isText = batch.AppendFrame(frameIOV[:0], i)
				if got := joined(frameIOV); !bytes.Equal(got, out[start:end]) || size != end-start || isText != text[i] {
					t.Fatalf("frame %d: %d bytes (said %d), text %v; want %d bytes, text %v", i, len(got), size, isText, end-start, text[i])
				}
				start = end
			}

			// The large bodies are the Message's, in both batches; the
			// others are copies.
			var borrowed, otherBorrowed [][]byte
			for _, br := range batch.borrows {
				borrowed = append(borrowed, br.body)
			}
			for _, br := range otherBatch.borrows {
				otherBorrowed = append(otherBorrowed, br.body)
			}
			if len(borrowed) != big || len(otherBorrowed) != big {
				t.Fatalf("%d and %d borrowed bodies, want %d", len(borrowed), len(otherBorrowed), big)
			}
			for i := range borrowed {
				if unsafe.SliceData(borrowed[i]) != unsafe.SliceData(otherBorrowed[i]) || len(borrowed[i]) < MinBorrowedBody {
					t.Fatalf("borrowed body %d is not the one shared body", i)
				}
			}

			// The frames parse back to what was sent.
			flat.got = flat.got[:0]
			if err := flat.parser.Parse(out, flat); err != nil {
				t.Fatal(err)
			}
			for i, body := range bodies {
				for j, f := range flat.got[1+2*i : 3+2*i] {
					if f.Command != frames.CmdMessage || string(f.Body) != body || hdr(f, "x-odd") != "a:b" {
						t.Fatalf("delivery %d.%d: %s with %d bytes", i, j, f.Command, len(f.Body))
					}
				}
			}

			// Done lets go of every borrowed body.
			batch.Done()
			if batch.Len() != 0 || batch.Frames() != 0 {
				t.Fatalf("after Done: %d bytes, %d frames", batch.Len(), batch.Frames())
			}
			for _, br := range batch.borrows[:cap(batch.borrows)] {
				if br.body != nil {
					t.Fatal("Done kept a borrowed body")
				}
			}
			for _, s := range batch.iov[:cap(batch.iov)] {
				if s != nil {
					t.Fatal("Done kept a slice in iov")
				}
			}
		})
	}
}

// A heart-beat is a one-byte text frame of its own.
func TestOutputBatchHeartbeat(t *testing.T) {
	var b OutputBatch
	b.AppendHeartbeat()
	out, ends, text := b.Flat()
	if string(out) != "\n" || !slices.Equal(ends, []int{1}) || !slices.Equal(text, []bool{true}) || b.Len() != 1 {
		t.Fatalf("heart-beat: %q %v %v", out, ends, text)
	}
	if iov := *b.Buffers(); len(iov) != 1 || string(iov[0]) != "\n" {
		t.Fatalf("heart-beat buffers: %q", iov)
	}
}

// A burst grows the batch; the next quiet write drops what is over 64 KiB
// and used less than an eighth of, so a quiet connection holds no burst's
// buffers; a busy one keeps them.
func TestOutputBatchDropsABurstsBuffersWhenQuiet(t *testing.T) {
	b := New(Config{})
	sub, pub := newClient(t, b), newClient(t, b)
	sub.connect()
	pub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "id:0", "destination:/topic/t")
	sub.poll()
	burst := func(n int) {
		for range n {
			pub.mustSend(frames.CmdSend, strings.Repeat("x", 100), "destination:/topic/t")
		}
	}
	var batch OutputBatch
	burst(2000)
	sub.s.Output(&batch)
	if batch.Len() < 256<<10 {
		t.Fatalf("burst of %d bytes, want > 256 KiB", batch.Len())
	}
	batch.Done()
	if batch.buf == nil || batch.frames == nil {
		t.Fatal("a busy write's buffers were dropped")
	}
	burst(1)
	sub.s.Output(&batch)
	if batch.Frames() != 1 {
		t.Fatalf("%d frames, want 1", batch.Frames())
	}
	batch.Done()
	if batch.buf != nil || batch.frames != nil || batch.iov != nil {
		t.Fatalf("a quiet write kept the burst's buffers: buf %d, frames %d, iov %d", cap(batch.buf), cap(batch.frames), cap(batch.iov))
	}
	burst(1) // and the batch works again from nothing
	sub.s.Output(&batch)
	sub.got = sub.got[:0]
	out, _, _ := batch.Flat()
	if err := sub.parser.Parse(out, sub); err != nil || len(sub.got) != 1 || len(sub.got[0].Body) != 100 {
		t.Fatalf("after the drop: %v, %d frames", err, len(sub.got))
	}
}

// bodySend is a SEND to /topic/bench with a body of size bytes and no
// escape sequences, so Feed can decode it in place again and again.
func bodySend(size int) []byte {
	return []byte("SEND\ndestination:/topic/bench\ncontent-type:application/octet-stream\ncontent-length:" +
		strconv.Itoa(size) + "\n\n" + strings.Repeat("x", size) + "\x00")
}

// publishBatched feeds one SEND and takes every subscriber's output into
// batch, as the server's writer does: Output, the vectored write's
// slices, the WebSocket writer's per-frame slices, Done.
func (f *fanout) publishBatched(tb testing.TB, batch *OutputBatch, iov *[][]byte) {
	if err := f.pub.Feed(f.send); err != nil {
		tb.Fatal(err)
	}
	for _, s := range f.subs {
		s.Output(batch)
		_ = batch.Buffers()
		for i := range batch.Frames() {
			*iov, _, _ = batch.AppendFrame((*iov)[:0], i)
		}
		batch.Done()
	}
}

// Deliveries through a batch allocate nothing: a SEND with a 16 KiB body
// to 100 subscribers allocates what it does to one.
func TestOutputBatchAllocsIndependentOfSubscribers(t *testing.T) {
	if testing.Short() {
		t.Skip("allocation counts: not in -short")
	}
	allocs := func(n int) float64 {
		f := newFanout(t, n)
		defer f.release()
		f.send = bodySend(16 << 10)
		var batch OutputBatch
		var iov [][]byte
		for range 100 {
			f.publishBatched(t, &batch, &iov)
		}
		return testing.AllocsPerRun(100, func() { f.publishBatched(t, &batch, &iov) })
	}
	one, many := allocs(1), allocs(100)
	if one != many {
		t.Errorf("allocs per SEND: %v with 1 subscriber, %v with 100; want equal", one, many)
	}
	t.Logf("allocs per SEND: %v", one)
}

// BenchmarkFanoutBody is BenchmarkFanout with 16 KiB and 64 KiB bodies to
// 100 subscribers, each delivery taken the way the writer took it before
// vectored writes (copy: AppendOutput, the body copied into the one
// output buffer) and the way it does now (batch: Output, then the slices a
// writev takes, then Done). No socket: this is the broker's part only.
func BenchmarkFanoutBody(b *testing.B) {
	const n = 100
	for _, size := range []int{16 << 10, 64 << 10} {
		for _, mode := range []string{"copy", "batch"} {
			b.Run("body="+strconv.Itoa(size>>10)+"KiB/"+mode, func(b *testing.B) {
				f := newFanout(b, n)
				defer f.release()
				f.send = bodySend(size)
				var batch OutputBatch
				var iov [][]byte
				publish := func() { f.publish(b) }
				if mode == "batch" {
					publish = func() { f.publishBatched(b, &batch, &iov) }
				}
				for range 100 {
					publish()
				}
				b.ReportAllocs()
				for b.Loop() {
					publish()
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			})
		}
	}
}
