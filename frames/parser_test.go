package frames

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const specErrorBody = "The message:\n-----\nMESSAGE\ndestined:/queue/a\nreceipt:message-12345\n\nHello queue a!\n-----\n" +
	"Did not contain a destination header, which is REQUIRED\nfor message propagation.\n"

// parseCases holds every frame example of the STOMP 1.2 specification, then
// the escaping, line-ending, body and heart-beat rules it states.
var parseCases = []struct {
	name    string
	version Version
	in      string
	want    []event
}{
	// Examples from the STOMP 1.2 specification, in its order.
	{"spec CONNECT", V12, "CONNECT\naccept-version:1.2\nhost:stomp.github.org\n\n\x00",
		[]event{frameEvent(CmdConnect, "accept-version:1.2|host:stomp.github.org", "")}},
	{"spec CONNECTED", V12, "CONNECTED\nversion:1.2\n\n\x00",
		[]event{frameEvent(CmdConnected, "version:1.2", "")}},
	{"spec CONNECT negotiation", V12, "CONNECT\naccept-version:1.0,1.1,2.0\nhost:stomp.github.org\n\n\x00",
		[]event{frameEvent(CmdConnect, "accept-version:1.0,1.1,2.0|host:stomp.github.org", "")}},
	{"spec ERROR negotiation", V12, "ERROR\nversion:1.2,2.1\ncontent-type:text/plain\n\nSupported protocol versions are 1.2 2.1\x00",
		[]event{frameEvent(CmdError, "version:1.2,2.1|content-type:text/plain", "Supported protocol versions are 1.2 2.1")}},
	{"spec CONNECT heart-beat", V12, "CONNECT\naccept-version:1.2\nhost:stomp.github.org\nheart-beat:0,0\n\n\x00",
		[]event{frameEvent(CmdConnect, "accept-version:1.2|host:stomp.github.org|heart-beat:0,0", "")}},
	{"spec SEND", V12, "SEND\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\n\x00",
		[]event{frameEvent(CmdSend, "destination:/queue/a|content-type:text/plain", "hello queue a\n")}},
	{"spec SEND in transaction", V12, "SEND\ndestination:/queue/a\ntransaction:tx1\ncontent-type:text/plain\n\nhello queue a\x00",
		[]event{frameEvent(CmdSend, "destination:/queue/a|transaction:tx1|content-type:text/plain", "hello queue a")}},
	{"spec SUBSCRIBE", V12, "SUBSCRIBE\nid:0\ndestination:/queue/foo\nack:client\n\n\x00",
		[]event{frameEvent(CmdSubscribe, "id:0|destination:/queue/foo|ack:client", "")}},
	{"spec UNSUBSCRIBE", V12, "UNSUBSCRIBE\nid:0\n\n\x00", []event{frameEvent(CmdUnsubscribe, "id:0", "")}},
	{"spec ACK", V12, "ACK\nid:12345\ntransaction:tx1\n\n\x00", []event{frameEvent(CmdAck, "id:12345|transaction:tx1", "")}},
	{"spec NACK", V12, "NACK\nid:12345\ntransaction:tx1\n\n\x00", []event{frameEvent(CmdNack, "id:12345|transaction:tx1", "")}},
	{"spec BEGIN", V12, "BEGIN\ntransaction:tx1\n\n\x00", []event{frameEvent(CmdBegin, "transaction:tx1", "")}},
	{"spec COMMIT", V12, "COMMIT\ntransaction:tx1\n\n\x00", []event{frameEvent(CmdCommit, "transaction:tx1", "")}},
	{"spec ABORT", V12, "ABORT\ntransaction:tx1\n\n\x00", []event{frameEvent(CmdAbort, "transaction:tx1", "")}},
	{"spec DISCONNECT", V12, "DISCONNECT\nreceipt:77\n\x00", nil}, // incomplete: no blank line yet
	{"spec DISCONNECT complete", V12, "DISCONNECT\nreceipt:77\n\n\x00", []event{frameEvent(CmdDisconnect, "receipt:77", "")}},
	{"spec RECEIPT", V12, "RECEIPT\nreceipt-id:77\n\n\x00", []event{frameEvent(CmdReceipt, "receipt-id:77", "")}},
	{"spec SEND with receipt", V12, "SEND\ndestination:/queue/a\nreceipt:message-12345\n\nhello queue a\x00",
		[]event{frameEvent(CmdSend, "destination:/queue/a|receipt:message-12345", "hello queue a")}},
	{"spec RECEIPT for SEND", V12, "RECEIPT\nreceipt-id:message-12345\n\n\x00",
		[]event{frameEvent(CmdReceipt, "receipt-id:message-12345", "")}},
	{"spec MESSAGE", V12, "MESSAGE\nsubscription:0\nmessage-id:007\ndestination:/queue/a\ncontent-type:text/plain\n\nhello queue a\x00",
		[]event{frameEvent(CmdMessage, "subscription:0|message-id:007|destination:/queue/a|content-type:text/plain", "hello queue a")}},
	{"spec ERROR", V12, "ERROR\nreceipt-id:message-12345\ncontent-type:text/plain\ncontent-length:170\nmessage:malformed frame received\n\n" + specErrorBody + "\x00",
		[]event{frameEvent(CmdError, "receipt-id:message-12345|content-type:text/plain|content-length:170|message:malformed frame received", specErrorBody)}},
	{"spec repeated header", V12, "MESSAGE\nfoo:World\nfoo:Hello\n\n\x00",
		[]event{frameEvent(CmdMessage, "foo:World|foo:Hello", "")}},
	{"spec STOMP frame", V12, "STOMP\naccept-version:1.2\nhost:stomp.github.org\n\n\x00",
		[]event{frameEvent(CmdStomp, "accept-version:1.2|host:stomp.github.org", "")}},

	// Value encoding.
	{"1.2 escapes", V12, "SEND\na\\cb:c\\nd\\re\\\\f\\c\n\n\x00",
		[]event{frameEvent(CmdSend, "a:b:c\nd\re\\f:", "")}},
	{"1.1 escapes", V11, "SEND\nk:a\\nb\\cc\\\\d\n\n\x00", []event{frameEvent(CmdSend, "k:a\nb:c\\d", "")}},
	{"1.0 backslash literal", V10, "SEND\nk:a\\tb\\n\n\n\x00", []event{frameEvent(CmdSend, "k:a\\tb\\n", "")}},
	{"CONNECT not unescaped", V12, "CONNECT\nlogin:dom\\user\npasscode:a\\cb\n\n\x00",
		[]event{frameEvent(CmdConnect, "login:dom\\user|passcode:a\\cb", "")}},
	{"CONNECTED not unescaped", V12, "CONNECTED\nserver:x\\ty\n\n\x00", []event{frameEvent(CmdConnected, "server:x\\ty", "")}},
	{"raw colon in value", V12, "SEND\nk:a:b\n\n\x00", []event{frameEvent(CmdSend, "k:a:b", "")}},
	{"empty value", V12, "SEND\nk:\n\n\x00", []event{frameEvent(CmdSend, "k:", "")}},
	{"whitespace kept", V12, "SEND\n k : v \n\n\x00", []event{frameEvent(CmdSend, " k : v ", "")}},

	// Line endings, bodies, heart-beats.
	{"CRLF", V12, "SEND\r\ndestination:/queue/a\r\n\r\nbody\x00",
		[]event{frameEvent(CmdSend, "destination:/queue/a", "body")}},
	{"content-length with NUL in body", V12, "SEND\ncontent-length:5\n\na\x00b\x00c\x00",
		[]event{frameEvent(CmdSend, "content-length:5", "a\x00b\x00c")}},
	{"content-length zero", V12, "SEND\ncontent-length:0\n\n\x00", []event{frameEvent(CmdSend, "content-length:0", "")}},
	{"first content-length wins", V12, "SEND\ncontent-length:2\ncontent-length:9\n\nab\x00",
		[]event{frameEvent(CmdSend, "content-length:2|content-length:9", "ab")}},
	{"heart-beats between frames", V12, "\n\r\nSEND\n\nx\x00\n\n\r\nACK\nid:1\n\n\x00\n",
		[]event{heartbeat, heartbeat, frameEvent(CmdSend, "", "x"), heartbeat, heartbeat, heartbeat,
			frameEvent(CmdAck, "id:1", ""), heartbeat}},
	{"heart-beats only", V12, "\n\n\r\n", []event{heartbeat, heartbeat, heartbeat}},
	{"NUL in header line", V12, "SEND\nk:a\x00b\n\nc\x00", []event{frameEvent(CmdSend, "k:a\x00b", "c")}},
}

func TestParseSpecAndRules(t *testing.T) {
	for _, tc := range parseCases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for _, feed := range feedings(len(in)) {
				events, p, err := parseAll(tc.version, Limits{}, feed.chunks(in))
				if err != nil {
					t.Fatalf("%s: %v", feed.name, err)
				}
				eventsEqual(t, feed.name, events, tc.want)
				if tc.want == nil && p.Buffered() != len(in) {
					t.Fatalf("%s: Buffered() = %d, want the %d bytes of the partial frame", feed.name, p.Buffered(), len(in))
				}
			}
		})
	}
}

func TestParseFirstHeaderWins(t *testing.T) {
	_, _, err := parseAll(V12, Limits{}, [][]byte{[]byte("MESSAGE\nfoo:World\nfoo:Hello\n\n\x00")})
	if err != nil {
		t.Fatal(err)
	}
	p := NewParser(Limits{})
	var value string
	r := &recorder{onFrame: func(f *Frame) error {
		v, ok := f.Header("foo")
		if !ok {
			t.Fatal("foo missing")
		}
		value = string(v)
		if _, ok := f.Header("bar"); ok {
			t.Fatal("bar present")
		}
		return nil
	}}
	if err := p.Parse([]byte("MESSAGE\nfoo:World\nfoo:Hello\n\n\x00"), r); err != nil {
		t.Fatal(err)
	}
	if value != "World" {
		t.Fatalf("foo = %q, want the first value World", value)
	}
}

// parseFailures must each fail, however the input is cut, with the sentinel
// that later becomes the ERROR frame's error-code.
var parseFailures = []struct {
	name    string
	version Version
	limits  Limits
	in      string
	want    error
}{
	{"undefined escape \\t", V12, Limits{}, "SEND\nk:a\\tb\n\n\x00", ErrBadEscape},
	{"undefined escape in key", V12, Limits{}, "SEND\nk\\x:v\n\n\x00", ErrBadEscape},
	{"\\r before 1.2", V11, Limits{}, "SEND\nk:a\\rb\n\n\x00", ErrBadEscape},
	{"lone trailing backslash", V12, Limits{}, "SEND\nk:ab\\\n\n\x00", ErrBadEscape},
	{"missing colon", V12, Limits{}, "SEND\ndestination\n\n\x00", ErrMalformedFrame},
	{"empty header name", V12, Limits{}, "SEND\n:v\n\n\x00", ErrMalformedFrame},
	{"content-length too short", V12, Limits{}, "SEND\ncontent-length:3\n\nabcd\x00", ErrMalformedFrame},
	{"content-length NUL missing", V12, Limits{}, "SEND\ncontent-length:2\n\nab\n", ErrMalformedFrame},
	{"content-length non-numeric", V12, Limits{}, "SEND\ncontent-length:abc\n\n\x00", ErrBadContentLength},
	{"content-length negative", V12, Limits{}, "SEND\ncontent-length:-1\n\n\x00", ErrBadContentLength},
	{"content-length plus sign", V12, Limits{}, "SEND\ncontent-length:+1\n\nx\x00", ErrBadContentLength},
	{"content-length space", V12, Limits{}, "SEND\ncontent-length: 1\n\nx\x00", ErrBadContentLength},
	{"content-length empty", V12, Limits{}, "SEND\ncontent-length:\n\n\x00", ErrBadContentLength},
	{"content-length huge", V12, Limits{}, "SEND\ncontent-length:99999999999999999999999\n\n", ErrFrameTooLarge},
	{"content-length over MaxBody, no body sent", V12, Limits{MaxBody: 10}, "SEND\ncontent-length:11\n\n", ErrFrameTooLarge},
	{"unknown command", V12, Limits{}, "FOO\n\n\x00", ErrUnknownCommand},
	{"lowercase command", V12, Limits{}, "send\n\n\x00", ErrUnknownCommand},
	{"CR before command", V12, Limits{}, "\rSEND\n\n\x00", ErrUnknownCommand},
	{"command line over limit", V12, Limits{MaxCommandLine: 8}, "UNSUBSCRIBE\nid:1\n\n\x00", ErrFrameTooLarge},
	{"command line over limit, no EOL yet", V12, Limits{MaxCommandLine: 8}, "AAAAAAAAAAAAAAAA", ErrFrameTooLarge},
	{"header line over limit", V12, Limits{MaxHeaderLine: 8}, "SEND\nk:12345678\n\n\x00", ErrFrameTooLarge},
	{"header line over limit, no EOL yet", V12, Limits{MaxHeaderLine: 8}, "SEND\nk:1234567890123", ErrFrameTooLarge},
	{"too many headers", V12, Limits{MaxHeaders: 2}, "SEND\na:1\nb:2\nc:3\n\n\x00", ErrFrameTooLarge},
	{"header bytes over limit", V12, Limits{MaxHeaderBytes: 10}, "SEND\na:1234\nb:12345\n\n\x00", ErrFrameTooLarge},
	{"header bytes over limit, no EOL yet", V12, Limits{MaxHeaderBytes: 10}, "SEND\na:1234\nb:123456789", ErrFrameTooLarge},
	{"body over limit", V12, Limits{MaxBody: 5}, "SEND\n\n123456\x00", ErrFrameTooLarge},
	{"body over limit, NUL missing", V12, Limits{MaxBody: 5}, "SEND\n\n1234567", ErrFrameTooLarge},
	{"content-length body over limit", V12, Limits{MaxBody: 5}, "SEND\ncontent-length:6\n\n123456\x00", ErrFrameTooLarge},
}

func TestParseFailures(t *testing.T) {
	for _, tc := range parseFailures {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for _, feed := range feedings(len(in)) {
				_, p, err := parseAll(tc.version, tc.limits, feed.chunks(in))
				wantErrIs(t, feed.name, err, tc.want)
				// The error is sticky: the stream cannot be resynchronised.
				err2 := p.Parse([]byte("SEND\n\n\x00"), &recorder{})
				wantErrIs(t, feed.name+" after error", err2, tc.want)
			}
		})
	}
}

// At each limit exactly, the frame is accepted; one more byte or header and
// it fails (the failure side is in parseFailures).
func TestParseAtLimits(t *testing.T) {
	cases := []struct {
		name   string
		limits Limits
		in     string
	}{
		{"command line", Limits{MaxCommandLine: 11}, "UNSUBSCRIBE\nid:1\n\n\x00"},
		{"header line", Limits{MaxHeaderLine: 8}, "SEND\nk:123456\n\n\x00"},
		{"header line with CRLF", Limits{MaxHeaderLine: 8}, "SEND\r\nk:123456\r\n\r\n\x00"},
		{"headers", Limits{MaxHeaders: 2}, "SEND\na:1\nb:2\n\n\x00"},
		{"header bytes", Limits{MaxHeaderBytes: 10}, "SEND\na:1234\nb:12\n\n\x00"},
		{"body", Limits{MaxBody: 5}, "SEND\n\n12345\x00"},
		{"content-length body", Limits{MaxBody: 5}, "SEND\ncontent-length:5\n\n12345\x00"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			for _, feed := range feedings(len(in)) {
				events, _, err := parseAll(V12, tc.limits, feed.chunks(in))
				if err != nil {
					t.Fatalf("%s: %v", feed.name, err)
				}
				if len(events) != 1 || events[0].heartbeat {
					t.Fatalf("%s: got %v, want one frame", feed.name, events)
				}
			}
		})
	}
}

// A session negotiates the version while handling CONNECT; frames pipelined
// behind it in the same chunk must be read with the new version.
func TestParseSetVersionTakesEffectForNextFrame(t *testing.T) {
	p := NewParser(Limits{})
	r := &recorder{onFrame: func(f *Frame) error {
		if f.Command == CmdConnect {
			p.SetVersion(V10)
		}
		return nil
	}}
	in := []byte("CONNECT\naccept-version:1.0\n\n\x00SEND\nk:a\\tb\n\n\x00")
	if err := p.Parse(in, r); err != nil {
		t.Fatal(err)
	}
	eventsEqual(t, "pipelined", r.events, []event{
		frameEvent(CmdConnect, "accept-version:1.0", ""),
		frameEvent(CmdSend, "k:a\\tb", ""), // 1.0: a backslash is a plain byte
	})
}

func TestParseHandlerErrorStops(t *testing.T) {
	stop := errors.New("stop")
	p := NewParser(Limits{})
	r := &recorder{onFrame: func(*Frame) error { return stop }}
	err := p.Parse([]byte("SEND\n\na\x00SEND\n\nb\x00"), r)
	if !errors.Is(err, stop) {
		t.Fatalf("err = %v, want the handler's", err)
	}
	if len(r.events) != 1 {
		t.Fatalf("handler saw %d frames after returning an error, want 1", len(r.events))
	}
	if err := p.Parse([]byte("SEND\n\nc\x00"), r); !errors.Is(err, stop) {
		t.Fatalf("after a handler error Parse returned %v", err)
	}
}

// Header views are capped, so a handler appending to one cannot overwrite
// the bytes after it.
func TestParseViewsAreCapped(t *testing.T) {
	p := NewParser(Limits{})
	r := &recorder{onFrame: func(f *Frame) error {
		_ = append(f.Headers[0].Value, "XXXX"...)
		_ = append(f.Headers[0].Key, "YYYY"...)
		return nil
	}}
	if err := p.Parse([]byte("SEND\na:1\nb:2\n\nbody\x00"), r); err != nil {
		t.Fatal(err)
	}
	if err := p.Parse([]byte("SEND\na:1\nb:2\n\nbody\x00"), r); err != nil {
		t.Fatal(err)
	}
	eventsEqual(t, "capped", r.events, []event{
		frameEvent(CmdSend, "a:1|b:2", "body"), frameEvent(CmdSend, "a:1|b:2", "body"),
	})
}

// Only a frame that spans chunks is copied, and a big spill buffer is not
// kept once its frame is done.
func TestParseSpillBuffer(t *testing.T) {
	p := NewParser(Limits{})
	r := &recorder{}
	body := strings.Repeat("x", 64<<10)
	frame := []byte("SEND\ncontent-length:65536\n\n" + body + "\x00")
	if err := p.Parse(clone(frame[:100]), r); err != nil {
		t.Fatal(err)
	}
	if p.Buffered() != 100 {
		t.Fatalf("Buffered() = %d after a partial frame, want 100", p.Buffered())
	}
	// The rest plus a whole second frame and a heart-beat in one chunk.
	rest := append(clone(frame[100:]), "SEND\n\nnext\x00\n"...)
	if err := p.Parse(rest, r); err != nil {
		t.Fatal(err)
	}
	if p.Buffered() != 0 || p.pending != nil {
		t.Fatalf("after the frame: Buffered() = %d, spill buffer cap %d; want 0 and released", p.Buffered(), cap(p.pending))
	}
	eventsEqual(t, "spill", r.events, []event{
		frameEvent(CmdSend, "content-length:65536", body), frameEvent(CmdSend, "", "next"), heartbeat,
	})
}

// A frame whose bytes are in one chunk is handed over as views into that
// chunk: no copy.
func TestParseZeroCopy(t *testing.T) {
	in := []byte("SEND\ndestination:/queue/a\n\nhello\x00")
	p := NewParser(Limits{})
	var bodyAt, destAt *byte
	r := &recorder{onFrame: func(f *Frame) error {
		bodyAt, destAt = &f.Body[0], &f.Headers[0].Value[0]
		return nil
	}}
	if err := p.Parse(in, r); err != nil {
		t.Fatal(err)
	}
	if bodyAt != &in[bytes.IndexByte(in, 'h')] || destAt != &in[bytes.IndexByte(in, '/')] {
		t.Fatal("body or header value was copied, want views into the chunk")
	}
}

func TestParseAllocations(t *testing.T) {
	frame := []byte("SEND\ndestination:/queue/a\ncontent-type:text/plain\nreceipt:r-1\npersistent:true\nx-trace:abc\ncontent-length:11\n\nhello world\x00\n")
	p := NewParser(Limits{})
	r := nopHandler{}
	buf := make([]byte, len(frame))
	whole := testing.AllocsPerRun(1000, func() {
		copy(buf, frame)
		if err := p.Parse(buf, r); err != nil {
			t.Fatal(err)
		}
	})
	split := testing.AllocsPerRun(1000, func() {
		copy(buf, frame)
		if err := p.Parse(buf[:30], r); err != nil {
			t.Fatal(err)
		}
		if err := p.Parse(buf[30:], r); err != nil {
			t.Fatal(err)
		}
	})
	if whole != 0 || split != 0 {
		t.Fatalf("allocs per frame: whole %v, split across chunks %v; want 0 in steady state", whole, split)
	}
}

type nopHandler struct{}

func (nopHandler) HandleFrame(*Frame) error { return nil }
func (nopHandler) HandleHeartbeat() error   { return nil }

func TestErrorCode(t *testing.T) {
	cases := []struct {
		in   string
		code string
	}{
		{"SEND\nk:\\t\n\n\x00", "malformed-frame"},
		{"SEND\ncontent-length:x\n\n\x00", "malformed-frame"},
		{"BOGUS\n\n\x00", "unknown-command"},
		{"SEND\ncontent-length:99999999\n\n", "frame-too-large"},
	}
	for _, tc := range cases {
		_, _, err := parseAll(V12, Limits{}, [][]byte{[]byte(tc.in)})
		if got := ErrorCode(err); got != tc.code {
			t.Errorf("%q: ErrorCode = %q (err %v), want %q", tc.in, got, err, tc.code)
		}
	}
	if got := ErrorCode(errors.New("plain")); got != "" {
		t.Errorf("ErrorCode(plain error) = %q, want empty", got)
	}
}
