package broker

import (
	"strings"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// Ids past MaxIDLength and headers with C0 control bytes end the session
// with ERROR invalid-header, not retryable; TAB, escaped LF and CR, and
// ids at the limit pass.
func TestHeaderRules(t *testing.T) {
	long := strings.Repeat("i", DefaultMaxIDLength+1)
	atLimit := strings.Repeat("i", DefaultMaxIDLength)
	cases := []struct {
		name    string
		version string // accept-version
		wire    string // the frame after CONNECT, raw
		ok      bool
	}{
		{"subscription id at the limit", "1.2", "SUBSCRIBE\ndestination:/topic/t\nid:" + atLimit + "\n\n\x00", true},
		{"subscription id past the limit", "1.2", "SUBSCRIBE\ndestination:/topic/t\nid:" + long + "\n\n\x00", false},
		{"unsubscribe id past the limit", "1.2", "UNSUBSCRIBE\nid:" + long + "\n\n\x00", false},
		{"receipt past the limit", "1.2", "SEND\ndestination:/queue/a\nreceipt:" + long + "\n\n\x00", false},
		{"transaction past the limit", "1.2", "BEGIN\ntransaction:" + long + "\n\n\x00", false},
		{"other header as long is fine", "1.2", "SEND\ndestination:/queue/a\nx-id:" + long + "\n\n\x00", true},
		{"TAB in a value", "1.2", "SEND\ndestination:/queue/a\nx:a\tb\n\n\x00", true},
		{"raw NUL in a value", "1.2", "SEND\ndestination:/queue/a\nx:a\x00b\n\n\x00", false},
		{"raw SOH in a name", "1.2", "SEND\ndestination:/queue/a\nx\x01y:v\n\n\x00", false},
		{"raw ESC in a value", "1.1", "SEND\ndestination:/queue/a\nx:\x1b[2J\n\n\x00", false},
		{"escaped LF in a value", "1.2", "SEND\ndestination:/queue/a\nx:a\\nMESSAGE\n\n\x00", true},
		{"escaped LF in a name", "1.1", "SEND\ndestination:/queue/a\nx\\ny:v\n\n\x00", true},
		{"escaped CR in a value", "1.2", "SEND\ndestination:/queue/a\nx:a\\rb\n\n\x00", true},
		{"raw BEL in a value (1.0)", "1.0", "SEND\ndestination:/queue/a\nx:a\x07b\n\n\x00", false},
		{"raw VT in a value (1.2)", "1.2", "SEND\ndestination:/queue/a\nx:a\x0bb\n\n\x00", false},
		{"C0 in CONNECT", "", "CONNECT\naccept-version:1.2\nlogin:a\x07\n\n\x00", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, New(Config{}))
			if tc.version != "" {
				c.connect("accept-version:" + tc.version)
			}
			err := c.feed(tc.wire)
			if tc.ok {
				if err != nil {
					t.Fatalf("refused: %v %v", err, commands(c.poll()))
				}
				return
			}
			if !isClosed(err) {
				t.Fatalf("accepted: %v", err)
			}
			f := c.next()
			if f.Command != frames.CmdError || hdr(f, "error-code") != CodeInvalidHeader || hdr(f, "retryable") != "false" {
				t.Fatalf("got %s %v, want ERROR invalid-header", f.Command, headerLines(f))
			}
			if r, _ := c.s.CloseReason(); r != CloseProtocolError {
				t.Fatalf("close reason %v", r)
			}
		})
	}
}

// The check runs on every frame, so it must not allocate.
func TestHeadersValidDoesNotAllocate(t *testing.T) {
	c := newClient(t, New(Config{}))
	f := sendFrame("body", "destination:/queue/a", "receipt:r-1", "transaction:t", "content-type:text/plain")
	if allocs := testing.AllocsPerRun(100, func() { c.s.headersValid(f) }); allocs != 0 {
		t.Fatalf("%v allocations per frame", allocs)
	}
}

// An escaped LF from a 1.2 publisher cannot forge a header line for a 1.0
// subscriber, which has no escapes: the encoder writes a space.
func TestEscapedLineBreakReachesA10SubscriberOnOneLine(t *testing.T) {
	b := New(Config{})
	sub, pub := newClient(t, b), newClient(t, b)
	sub.connect("accept-version:1.0")
	pub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "destination:/topic/t")
	sub.poll()
	if err := pub.feed("SEND\ndestination:/topic/t\nx:a\\nsubscription:forged\r\n\n\x00"); err != nil {
		t.Fatal(err)
	}
	f := sub.next()
	if got := hdr(f, "x"); got != "a subscription:forged" {
		t.Fatalf("x = %q on a 1.0 delivery, want the line break as a space", got)
	}
	n := 0
	for _, h := range f.Headers {
		if string(h.Key) == "subscription" {
			n++
		}
	}
	if n != 1 || hdr(f, "subscription") != "/topic/t" {
		t.Fatalf("headers %v: want one subscription header, the real one", headerLines(f))
	}
}
