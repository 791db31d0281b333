package broker

import (
	"slices"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// AppendOutputFrames says per frame whether it is valid UTF-8 (a WebSocket
// text message) without the writer scanning it: a MESSAGE from its
// Message's answer, found once for all subscribers, and its subscription
// header; a control frame by a scan.
func TestOutputFramesSayWhichAreText(t *testing.T) {
	b := New(Config{})
	sub := newClient(t, b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "id:plain", "destination:/topic/t")
	sub.mustSend(frames.CmdSubscribe, "", "id:\xfe", "destination:/topic/t", "receipt:\xff")
	pub := newClient(t, b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "héllo", "destination:/topic/t")
	pub.mustSend(frames.CmdSend, "\xff\xfe", "destination:/topic/t")
	pub.mustSend(frames.CmdSend, "ok", "destination:/topic/t", "x-note:\xc3")
	out, ends, text, _ := sub.s.AppendOutputFrames(nil, nil, nil)
	if len(ends) != len(text) {
		t.Fatalf("%d frames, %d text flags", len(ends), len(text))
	}
	var got []string
	start := 0
	for i, end := range ends {
		sub.got = sub.got[:0]
		if err := sub.parser.Parse(out[start:end], sub); err != nil || len(sub.got) != 1 {
			t.Fatalf("frame %d: %v, %d frames", i, err, len(sub.got))
		}
		f := sub.got[0]
		kind := "binary"
		if text[i] {
			kind = "text"
		}
		got = append(got, f.Command.String()+"/"+hdr(f, "subscription")+"/"+string(f.Body)+"/"+kind)
		start = end
	}
	want := []string{
		"RECEIPT///binary", // its receipt-id is not UTF-8
		"MESSAGE/plain/héllo/text", "MESSAGE/\xfe/héllo/binary",
		"MESSAGE/plain/\xff\xfe/binary", "MESSAGE/\xfe/\xff\xfe/binary",
		"MESSAGE/plain/ok/binary", "MESSAGE/\xfe/ok/binary", // a header that is not UTF-8
	}
	if !slices.Equal(got, want) {
		t.Fatalf("frames %q\nwant %q", got, want)
	}
}

// A message's answer is found once, when it is built, and kept: copies
// share it.
func TestMessageTextFoundOnce(t *testing.T) {
	m := RecoveredMessage("1", "/topic/t", []frames.Header{{Key: []byte("k"), Value: []byte("v")}}, []byte("abc"), false, 0)
	if m.textState != 1 || !m.isText() {
		t.Fatalf("state %d; want 1 (text), found when built", m.textState)
	}
	m.Body = []byte{0xff} // never done to a real message: shows the answer is not recomputed
	if !m.isText() || !m.withOffset("e", 1).isText() {
		t.Fatal("the answer was computed again")
	}
	bad := RecoveredMessage("2", "/topic/t", nil, []byte{0xff}, false, 0)
	if bad.textState != 2 || bad.isText() {
		t.Fatalf("invalid body: state %d", bad.textState)
	}
	if lit := (&Message{ID: "3", Body: []byte{0xc3}}); lit.isText() {
		t.Fatal("a message built otherwise is scanned: invalid")
	}
}
