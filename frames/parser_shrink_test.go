package frames

import (
	"strconv"
	"strings"
	"testing"
)

// TestParserShrink: Shrink called by the handler lets the header slices
// and the spill buffer go after that frame, and only that one; a frame
// with more than retainHeaders headers lets them go by itself; the next
// frames work as before.
func TestParserShrink(t *testing.T) {
	p := NewParser(Limits{})
	shrink := false
	var seen []string
	r := &recorder{onFrame: func(f *Frame) error {
		v, _ := f.Header("id")
		seen = append(seen, string(v))
		if shrink {
			p.Shrink()
		}
		return nil
	}}
	feed := func(wire string) {
		t.Helper()
		if err := p.Parse([]byte(wire), r); err != nil {
			t.Fatal(err)
		}
	}
	sub := "SUBSCRIBE\nid:%s\ndestination:/topic/a\nreceipt:r\n\n\x00"
	feed(strings.Replace(sub, "%s", "1", 1))
	if cap(p.spans) < 3 || cap(p.frame.Headers) < 3 {
		t.Fatalf("after a plain frame: spans cap %d, headers cap %d; want them kept", cap(p.spans), cap(p.frame.Headers))
	}
	shrink = true
	wire := strings.Replace(sub, "%s", "2", 1)
	feed(wire[:10]) // spans chunks: the spill buffer is used
	if p.Buffered() == 0 {
		t.Fatal("nothing buffered mid-frame")
	}
	feed(wire[10:])
	if p.spans != nil || p.frame.Headers != nil || p.pending != nil {
		t.Fatalf("after Shrink: spans %d, headers %d, pending %d; want all let go", cap(p.spans), cap(p.frame.Headers), cap(p.pending))
	}
	shrink = false
	feed(strings.Replace(sub, "%s", "3", 1))
	if cap(p.spans) == 0 {
		t.Fatal("the frame after a Shrink did not keep its slices")
	}
	var many strings.Builder
	many.WriteString("SEND\nid:4\n")
	for i := range retainHeaders + 1 {
		many.WriteString("h" + strconv.Itoa(i) + ":v\n")
	}
	many.WriteString("\n\x00")
	feed(many.String())
	if p.spans != nil || p.frame.Headers != nil {
		t.Fatalf("after %d headers: spans cap %d kept, want let go", retainHeaders+2, cap(p.spans))
	}
	if strings.Join(seen, ",") != "1,2,3,4" {
		t.Fatalf("frames seen %v, want 1,2,3,4", seen)
	}
}

// TestParserIdle: a parser is Idle only between frames with no buffer and
// no error: after a Shrink-ed frame, not in the middle of one, not after a
// plain frame (its slices are kept), not after an error.
func TestParserIdle(t *testing.T) {
	p := NewParser(Limits{})
	if !p.Idle() {
		t.Fatal("a new parser is not idle")
	}
	r := &recorder{onFrame: func(*Frame) error { p.Shrink(); return nil }}
	if err := p.Parse([]byte("SUBSCRIBE\nid:1\ndestination:/topic/a\n\n\x00\n"), r); err != nil {
		t.Fatal(err)
	}
	if !p.Idle() {
		t.Fatal("not idle after a Shrink-ed frame and a heart-beat")
	}
	if err := p.Parse([]byte("SEND\ndestination:/q"), r); err != nil {
		t.Fatal(err)
	}
	if p.Idle() {
		t.Fatal("idle in the middle of a frame")
	}
	if err := p.Parse([]byte("\n\n\x00"), &recorder{}); err != nil {
		t.Fatal(err)
	}
	if p.Idle() {
		t.Fatal("idle after a plain frame: its header slices are kept")
	}
	if err := p.Parse([]byte("NOPE\n\n\x00"), &recorder{}); err == nil || p.Idle() {
		t.Fatalf("bad command: error %v, idle %v; want an error and not idle", err, p.Idle())
	}
}
