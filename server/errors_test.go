package server

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// errorWant is what an ERROR frame must say. receipt "" means the frame
// must carry no receipt-id.
type errorWant struct {
	message   string
	code      string
	retryable bool
	receipt   string
}

// checkERROR asserts that f is an ERROR frame carrying exactly what
// ARCHITECTURE.md commits to: a short message, error-code, retryable,
// receipt-id when the bad frame asked for one, a text/plain body that
// explains, and a content-length matching it.
func checkERROR(t testing.TB, f *frames.Frame, want errorWant) {
	t.Helper()
	if f.Command != frames.CmdError {
		t.Fatalf("got %s %v, want ERROR %s", f.Command, f.Headers, want.code)
	}
	if got := header(f, "error-code"); got != want.code {
		t.Errorf("error-code = %q, want %q (message %q, body %q)", got, want.code, header(f, "message"), f.Body)
	}
	if got := header(f, "message"); got != want.message {
		t.Errorf("message = %q, want %q", got, want.message)
	}
	if got := header(f, "retryable"); got != strconv.FormatBool(want.retryable) {
		t.Errorf("retryable = %q, want %v", got, want.retryable)
	}
	if got, ok := f.Header("receipt-id"); want.receipt == "" && ok {
		t.Errorf("receipt-id = %q on an ERROR for a frame that asked for no receipt", got)
	} else if want.receipt != "" && string(got) != want.receipt {
		t.Errorf("receipt-id = %q (present %v), want %q", got, ok, want.receipt)
	}
	if got := header(f, "content-type"); got != "text/plain" {
		t.Errorf("content-type = %q, want text/plain", got)
	}
	if got := header(f, "content-length"); got != strconv.Itoa(len(f.Body)) {
		t.Errorf("content-length = %q, body has %d bytes", got, len(f.Body))
	}
	if len(strings.TrimSpace(string(f.Body))) < 10 {
		t.Errorf("body %q does not explain the error", f.Body)
	}
}

// expectERROR reads the next frame, checks it against want and then waits
// for the server to close the connection.
func (c *rawClient) expectERROR(want errorWant) *frames.Frame {
	c.t.Helper()
	f := c.next(5 * time.Second)
	checkERROR(c.t, f, want)
	c.expectClosed(5 * time.Second)
	return f
}

// errorLimits is the frame limit configuration of the ERROR table: small
// enough to hit with a few bytes.
var errorLimits = frames.Limits{MaxBody: 1024, MaxHeaders: 16}

// Every protocol violation ends the same way: one ERROR frame with exact
// headers, then the server closes the connection.
func TestErrorFrames(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{Frame: errorLimits}})
	manyHeaders := make([]string, 0, errorLimits.MaxHeaders+1)
	manyHeaders = append(manyHeaders, "destination:/queue/a")
	for i := len(manyHeaders); i <= errorLimits.MaxHeaders; i++ {
		manyHeaders = append(manyHeaders, "h"+strconv.Itoa(i)+":v")
	}
	notProtocol := func(message, code, receipt string) errorWant {
		return errorWant{message: message, code: code, receipt: receipt}
	}
	tests := []struct {
		name  string
		setup []string // frames sent (and receipted as "setup-<i>") first
		bad   string
		want  errorWant
	}{
		{
			name: "header without colon",
			bad:  "SEND\ndestination:/queue/a\nreceipt:r1\nno-colon-here\n\nbody\x00",
			want: notProtocol("malformed frame", "malformed-frame", ""),
		},
		{
			name: "empty header name",
			bad:  "SEND\ndestination:/queue/a\n:value\n\nbody\x00",
			want: notProtocol("malformed frame", "malformed-frame", ""),
		},
		{
			name: "undefined escape \\t",
			bad:  "SEND\ndestination:/queue/a\nx-note:a\\tb\n\nbody\x00",
			want: notProtocol("undefined escape sequence in header", "malformed-frame", ""),
		},
		{
			name: "invalid content-length",
			bad:  "SEND\ndestination:/queue/a\ncontent-length:12x\n\nbody\x00",
			want: notProtocol("invalid content-length", "malformed-frame", ""),
		},
		{
			name: "no NUL after content-length bytes",
			bad:  "SEND\ndestination:/queue/a\ncontent-length:2\n\nbody\x00",
			want: notProtocol("malformed frame", "malformed-frame", ""),
		},
		{
			name: "unknown command",
			bad:  frame("PUBLISH", "x", "destination:/queue/a", "receipt:r1"),
			want: notProtocol("unknown command", "unknown-command", ""),
		},
		{
			name: "lower-case command",
			bad:  frame("send", "x", "destination:/queue/a"),
			want: notProtocol("unknown command", "unknown-command", ""),
		},
		{
			name: "SUBSCRIBE without destination",
			bad:  frame("SUBSCRIBE", "", "id:1", "receipt:r-sub"),
			want: notProtocol("missing destination header", "missing-header", "r-sub"),
		},
		{
			name: "SUBSCRIBE without id",
			bad:  frame("SUBSCRIBE", "", "destination:/topic/a", "receipt:r-sub"),
			want: notProtocol("missing id header", "missing-header", "r-sub"),
		},
		{
			name:  "duplicate subscription id",
			setup: []string{frame("SUBSCRIBE", "", "id:1", "destination:/topic/a")},
			bad:   frame("SUBSCRIBE", "", "id:1", "destination:/topic/b", "receipt:r-dup"),
			want:  notProtocol("duplicate subscription id", "duplicate-subscription", "r-dup"),
		},
		{
			name:  "UNSUBSCRIBE unknown id",
			setup: []string{frame("SUBSCRIBE", "", "id:1", "destination:/topic/a")},
			bad:   frame("UNSUBSCRIBE", "", "id:2", "receipt:r-unsub"),
			want:  notProtocol("unknown subscription", "unknown-subscription", "r-unsub"),
		},
		{
			name:  "ACK of an unknown id",
			setup: []string{frame("SUBSCRIBE", "", "id:1", "destination:/queue/acks", "ack:client")},
			bad:   frame("ACK", "", "id:1.99", "receipt:r-ack"),
			want:  notProtocol("unknown message", "unknown-message", "r-ack"),
		},
		{
			name: "ACK of a garbage id",
			bad:  frame("ACK", "", "id:nonsense", "receipt:r-ack"),
			want: notProtocol("unknown message", "unknown-message", "r-ack"),
		},
		{
			name: "NACK without id",
			bad:  frame("NACK", "", "receipt:r-nack"),
			want: notProtocol("missing id header", "missing-header", "r-nack"),
		},
		{
			name: "COMMIT of an unknown transaction",
			bad:  frame("COMMIT", "", "transaction:tx-none", "receipt:r-commit"),
			want: notProtocol("unknown transaction", "unknown-transaction", "r-commit"),
		},
		{
			name:  "ABORT of an unknown transaction",
			setup: []string{frame("BEGIN", "", "transaction:tx-1")},
			bad:   frame("ABORT", "", "transaction:tx-2", "receipt:r-abort"),
			want:  notProtocol("unknown transaction", "unknown-transaction", "r-abort"),
		},
		{
			name: "SEND in an unknown transaction",
			bad:  frame("SEND", "x", "destination:/queue/a", "transaction:tx-none", "receipt:r-send"),
			want: notProtocol("unknown transaction", "unknown-transaction", "r-send"),
		},
		{
			name: "SEND to an invalid destination",
			bad:  frame("SEND", "x", "destination:/foo/bar", "receipt:r-send"),
			want: notProtocol("invalid destination", "invalid-destination", "r-send"),
		},
		{
			name: "SEND to a wildcard topic",
			bad:  frame("SEND", "x", "destination:/topic/a.*", "receipt:r-send"),
			want: notProtocol("invalid destination", "invalid-destination", "r-send"),
		},
		{
			name: "SEND without destination",
			bad:  frame("SEND", "x", "receipt:r-send"),
			want: notProtocol("missing destination header", "missing-header", "r-send"),
		},
		{
			name: "invalid ack mode",
			bad:  frame("SUBSCRIBE", "", "id:1", "destination:/queue/a", "ack:sometimes", "receipt:r-sub"),
			want: notProtocol("invalid ack header", "invalid-header", "r-sub"),
		},
		{
			name: "receipt-id is escaped",
			bad:  frame("SEND", "x", "destination:/nowhere", "receipt:a\\cb\\\\c"),
			want: notProtocol("invalid destination", "invalid-destination", "a:b\\c"),
		},
		{
			name: "too many headers",
			bad:  frame("SEND", "x", manyHeaders...),
			want: notProtocol("frame too large", "frame-too-large", ""),
		},
		{
			name: "body over MaxBody without content-length",
			bad:  "SEND\ndestination:/queue/a\n\n" + strings.Repeat("x", 2*errorLimits.MaxBody),
			want: notProtocol("frame too large", "frame-too-large", ""),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, srv.addr)
			c.connect()
			for i, s := range tt.setup {
				// Add a receipt so the setup is known to have taken effect.
				receipt := "setup-" + strconv.Itoa(i)
				s = strings.Replace(s, "\n", "\nreceipt:"+receipt+"\n", 1)
				c.send(s)
				if f := c.next(5 * time.Second); f.Command != frames.CmdReceipt || header(f, "receipt-id") != receipt {
					t.Fatalf("setup frame %d: got %s %v", i, f.Command, f.Headers)
				}
			}
			c.send(tt.bad)
			c.expectERROR(tt.want)
		})
	}
}

// STOMP 1.2: a content-length over the limit is refused from the headers
// alone, before the client has sent (and the server buffered) the body.
func TestErrorFrameTooLargeBeforeBody(t *testing.T) {
	srv := startServer(t, Config{Broker: broker.Config{Frame: frames.Limits{MaxBody: 1024}}})
	c := dialRaw(t, srv.addr)
	c.connect()
	c.send("SEND\ndestination:/queue/big\ncontent-length:2048\nreceipt:r-big\n\n")
	f := c.next(5 * time.Second)
	checkERROR(t, f, errorWant{message: "frame too large", code: "frame-too-large"})
	if !strings.Contains(string(f.Body), "1024") {
		t.Errorf("body %q does not name the limit", f.Body)
	}
	c.expectClosed(5 * time.Second)

	// A body of exactly MaxBody is fine on another connection.
	ok := dialRaw(t, srv.addr)
	ok.connect()
	ok.send(frame("SEND", strings.Repeat("y", 1024), "destination:/queue/big", "content-length:1024", "receipt:fits"))
	if f := ok.next(5 * time.Second); f.Command != frames.CmdReceipt || header(f, "receipt-id") != "fits" {
		t.Fatalf("a %d-byte body: got %s %v", 1024, f.Command, f.Headers)
	}
}

// After an ERROR nothing the client pipelined behind the bad frame takes
// effect: the SEND that follows it in the same write is never delivered.
func TestErrorStopsProcessing(t *testing.T) {
	srv := startServer(t, Config{})
	c := dialRaw(t, srv.addr)
	c.connect()
	c.send(frame("SEND", "bad", "destination:/foo/bar") +
		frame("SEND", "after-error", "destination:/queue/after", "receipt:r-after"))
	c.expectERROR(errorWant{message: "invalid destination", code: "invalid-destination"})

	// The next message on /queue/after is the marker: "after-error" never
	// entered the queue.
	other := dialRaw(t, srv.addr)
	other.connect()
	other.send(frame("SEND", "marker", "destination:/queue/after", "receipt:m"))
	if f := other.next(5 * time.Second); f.Command != frames.CmdReceipt {
		t.Fatalf("got %s, want RECEIPT", f.Command)
	}
	other.send(frame("SUBSCRIBE", "", "id:1", "destination:/queue/after"))
	if f := other.next(5 * time.Second); f.Command != frames.CmdMessage || string(f.Body) != "marker" {
		t.Fatalf("got %s %q, want MESSAGE marker", f.Command, f.Body)
	}
}
