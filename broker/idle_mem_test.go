package broker

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"github.com/stompbox/stompbox/frames"
)

// idleSessionBound is what one idle session (CONNECT with heart-beats, one
// topic SUBSCRIBE with a receipt, output taken, then silence) may keep on
// the heap: the Session, its subscription, the parser and whatever the
// CONNECTED and RECEIPT left behind. Issue 15 asks for <= 4 KiB RSS per
// idle connection with the driver's share and GC overhead included; the
// broker's share must stay well under it. Measured: 3273 B before the
// Session was split, about 1170 B after (Go 1.26, amd64).
const idleSessionBound = 1536

// maxSessionSize is what every connection's Session struct may take: at
// 512 B it fits its size class without a malloc header. State that few
// sessions use goes behind a pointer (session_rare.go), not in Session.
const maxSessionSize = 512

// sizeofSession is logged with the measure: the struct is most of it.
const sizeofSession = unsafe.Sizeof(Session{})

// TestIdleSessionHeap measures the heap held per idle session, N of them,
// driven through Feed with a fake transport (no driver), and asserts the
// bound. The sessions stay reachable through the slice until the second
// measurement, and are released after it.
func TestIdleSessionHeap(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates a thousand sessions")
	}
	const n = 1000
	b := New(Config{})
	trs := make([]fakeTransport, n)
	sessions := make([]*Session, n)
	wires := make([][2][]byte, n)
	for i := range wires { // built before measuring: the test's own bytes
		wires[i][0] = wireFrame(frames.V12, frames.CmdConnect, "", "accept-version:1.2", "host:/", "heart-beat:10000,10000")
		wires[i][1] = wireFrame(frames.V12, frames.CmdSubscribe, "", "id:sub-0", "destination:/topic/idle."+strconv.Itoa(i%10), "receipt:r-"+strconv.Itoa(i))
	}
	out := make([]byte, 0, 4096)
	before := heapInUse()
	for i := range sessions {
		s := b.NewSession(&trs[i], "127.0.0.1:1")
		for _, w := range wires[i] {
			if err := s.Feed(w); err != nil {
				t.Fatalf("session %d: %v", i, err)
			}
			var closing bool
			out, closing = s.AppendOutput(out[:0])
			if closing || len(out) == 0 {
				t.Fatalf("session %d: closing %v, output %q", i, closing, out)
			}
		}
		sessions[i] = s
	}
	wires = nil // the frames were decoded in place; they are not the sessions'
	after := heapInUse()
	per := (int64(after) - int64(before)) / n
	// A heart-beat interval later the writer has had nothing to write:
	for _, s := range sessions {
		if out, closing := s.AppendOutput(out[:0]); closing || len(out) != 0 {
			t.Fatalf("output %q, closing %v: want none", out, closing)
		}
		s.WriterIdle()
	}
	quiet := heapInUse()
	perQuiet := (int64(quiet) - int64(before)) / n
	t.Logf("heap per idle session: %d B, %d B once the writer has been idle (%d sessions, Sizeof(Session) %d B)", per, perQuiet, n, sizeofSession)
	// Output works again without the buffers.
	s0 := sessions[0]
	if err := s0.Feed(wireFrame(frames.V12, frames.CmdUnsubscribe, "", "id:sub-0", "receipt:again")); err != nil {
		t.Fatal(err)
	}
	if out, _ := s0.AppendOutput(out[:0]); !strings.Contains(string(out), "receipt-id:again") {
		t.Fatalf("after WriterIdle: output %q, want the RECEIPT", out)
	}
	for _, s := range sessions {
		s.Abort(ClosePeer)
		s.Release()
	}
	if per > idleSessionBound {
		t.Fatalf("an idle session holds %d B of heap, want <= %d", per, idleSessionBound)
	}
	if perQuiet > per-idleWriterSpares {
		t.Fatalf("WriterIdle let go of %d B per session, want >= %d (the outbox's and the writer's spare queues)", per-perQuiet, idleWriterSpares)
	}
}

// idleWriterSpares is at least what WriterIdle lets go of: the spare
// entry and control queues of the writer and of the outbox, left by the
// CONNECTED and the RECEIPT. Measured: 176 B (Go 1.26, amd64).
const idleWriterSpares = 160

// heapInUse is the live heap after a full collection.
func heapInUse() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC() // a second cycle frees what the first one's finalizers released
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestSessionStructSize keeps the Session struct within maxSessionSize.
func TestSessionStructSize(t *testing.T) {
	if sizeofSession > maxSessionSize {
		t.Fatalf("Session is %d B, want <= %d: put what few sessions use in sessionExtra (session_rare.go) or behind another pointer",
			sizeofSession, maxSessionSize)
	}
}

// TestParserDroppedWhileQuiet: after SUBSCRIBE a quiet session holds no
// parser, and the one the next Feed makes reads with the negotiated
// version (STOMP 1.0: no header unescaping), including a frame cut across
// two Feeds.
func TestParserDroppedWhileQuiet(t *testing.T) {
	b := New(Config{})
	c := newClient(t, b)
	c.connect("accept-version:1.0")
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/q", "receipt:r")
	if f := c.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("got %s, want RECEIPT", f.Command)
	}
	if c.s.parser != nil {
		t.Fatal("a quiet session keeps its parser after SUBSCRIBE")
	}
	wire := "SEND\ndestination:/queue/q\nx-note:a\\cb\n\nhi\x00"
	if err := c.feed(wire[:12]); err != nil {
		t.Fatal(err)
	}
	if c.s.parser == nil {
		t.Fatal("no parser in the middle of a frame")
	}
	if err := c.feed(wire[12:]); err != nil {
		t.Fatal(err)
	}
	f := c.next()
	if f.Command != frames.CmdMessage || hdr(f, "x-note") != `a\cb` || string(f.Body) != "hi" {
		t.Fatalf("got %s x-note %q body %q; want MESSAGE with x-note a\\cb (1.0: not unescaped) and hi", f.Command, hdr(f, "x-note"), f.Body)
	}
}

func TestOnlyHeartbeats(t *testing.T) {
	for _, tc := range []struct {
		chunk string
		beats uint64
		ok    bool
	}{
		{"\n", 1, true},
		{"\r\n", 1, true},
		{"\n\r\n\n", 3, true},
		{"", 0, false},
		{"\r", 0, false},     // the LF may come in the next chunk: the parser's job
		{"\n\r", 0, false},   // likewise
		{"\r\r\n", 0, false}, // a lone CR is no heart-beat
		{"\nSEND", 0, false},
		{"x", 0, false},
	} {
		beats, ok := onlyHeartbeats([]byte(tc.chunk))
		if beats != tc.beats || ok != tc.ok {
			t.Errorf("onlyHeartbeats(%q) = %d, %v; want %d, %v", tc.chunk, beats, ok, tc.beats, tc.ok)
		}
	}
}

// An idle connected session takes its client's heart-beats without making
// a parser: nothing is allocated per heart-beat, and each is counted.
func TestIdleHeartbeatsAllocateNothing(t *testing.T) {
	b := New(Config{})
	tr := &fakeTransport{}
	s := b.NewSession(tr, "127.0.0.1:1")
	defer s.Release()
	if err := s.Feed([]byte("CONNECT\naccept-version:1.2\nhost:test\nheart-beat:10000,10000\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	var batch OutputBatch
	s.Output(&batch)
	batch.Done()
	before := s.counts().heartbeats.Load()
	beat := []byte("\n")
	allocs := testing.AllocsPerRun(100, func() {
		if err := s.Feed(beat); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("%.1f allocations per heart-beat on an idle session, want 0", allocs)
	}
	if got := s.counts().heartbeats.Load() - before; got != 101 {
		t.Errorf("heart-beats counted: %d, want 101", got)
	}
}
