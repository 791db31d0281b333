package server

import (
	"bytes"
	"strconv"
	"strings"
	"testing"

	"github.com/gobwas/ws"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// RFC 6455, 8.1: a text message that is not UTF-8 fails the connection.
// The client learns why twice: ERROR malformed-frame, then close 1007.
func TestWebSocketInvalidUTF8(t *testing.T) {
	_, url := startWebServer(t, Config{})
	want := errorWant{message: "invalid UTF-8 in a text message", code: "malformed-frame"}
	tests := []struct {
		name      string
		fragments []string // of one text message
	}{
		{"0xff in a body", []string{"SEND\ndestination:/queue/u\n\nbad \xff byte\x00"}},
		{"overlong encoding", []string{"SEND\ndestination:/queue/u\n\n\xc0\xaf\x00"}},
		{"message ends inside a code point", []string{"SEND\ndestination:/queue/u\n\nab\x00\xe2\x82"}},
		{"message ends inside a code point split across fragments", []string{"SEND\ndestination:/queue/u\n\nab\x00\xe2", "\x82"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialWSClient(t, url, nil, "v12.stomp")
			c.connect()
			for i, f := range tt.fragments {
				op := ws.OpContinuation
				if i == 0 {
					op = ws.OpText
				}
				c.send(op, i == len(tt.fragments)-1, []byte(f))
			}
			f, op := c.next()
			if op != ws.OpText {
				t.Errorf("ERROR sent as %v", op)
			}
			checkERROR(t, f, want)
			c.expectClose(ws.StatusInvalidFramePayloadData)
		})
	}
}

// A code point split across fragments of one text message is valid UTF-8
// (the message is judged whole): the SEND is delivered intact, however the
// fragments cut it.
func TestWebSocketUTF8AcrossFragments(t *testing.T) {
	_, url := startWebServer(t, Config{})
	const body = "h€llo 😀 wörld"
	send := frame("SEND", body, "destination:/queue/utf8")
	at := func(sub string, k int) int { return strings.Index(send, sub) + k }
	tests := []struct {
		name string
		cuts []int
	}{
		{"€ after its first byte", []int{at("€", 1)}},
		{"€ after its second byte", []int{at("€", 2)}},
		{"😀 in two", []int{at("😀", 2)}},
		{"😀 in three", []int{at("😀", 1), at("😀", 2)}},
		{"😀 in four", []int{at("😀", 1), at("😀", 2), at("😀", 3)}},
		{"ö and € both", []int{at("€", 1), at("ö", 1)}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One queue per case: the connection of the case before may not
			// have released its subscription yet, and would compete for the
			// message (the cuts move with the longer destination).
			dest := "/queue/utf8-" + strconv.Itoa(i)
			c := dialWSClient(t, url, nil, "v12.stomp")
			c.connect()
			c.text(frame("SUBSCRIBE", "", "id:1", "destination:"+dest))
			send := strings.Replace(send, "destination:/queue/utf8", "destination:"+dest, 1)
			shift := len(dest) - len("/queue/utf8")
			start := 0
			cuts := make([]int, len(tt.cuts))
			for k, cut := range tt.cuts {
				cuts[k] = cut + shift
			}
			for i, end := range append(cuts, len(send)) {
				op := ws.OpContinuation
				if i == 0 {
					op = ws.OpText
				}
				c.send(op, end == len(send), []byte(send[start:end]))
				start = end
			}
			f, op := c.next()
			if f.Command != frames.CmdMessage || string(f.Body) != body {
				t.Fatalf("got %s %q (%s), want MESSAGE %q", f.Command, f.Body, header(f, "message"), body)
			}
			if op != ws.OpText {
				t.Errorf("UTF-8 MESSAGE sent as %v, want text", op)
			}
		})
	}
}

// RFC 6455, 5.1: "The server MUST close the connection upon receiving a
// frame that is not masked", with 1002.
func TestWebSocketUnmaskedFrame(t *testing.T) {
	_, url := startWebServer(t, Config{})
	c := dialWSClient(t, url, nil, "v12.stomp")
	c.connect()
	payload := []byte(frame("SEND", "x", "destination:/queue/a"))
	c.raw(append([]byte{0x81, byte(len(payload))}, payload...)) // FIN+text, no MASK bit
	f, _ := c.next()
	checkERROR(t, f, errorWant{message: "WebSocket protocol error", code: "protocol-error"})
	if !strings.Contains(string(f.Body), "not masked") {
		t.Errorf("ERROR body %q does not say what was wrong", f.Body)
	}
	c.expectClose(ws.StatusProtocolError)
}

// A text message in three fragments with pings between them is one STOMP
// frame; each ping is answered at once with a pong carrying its payload.
func TestWebSocketFragmentedWithPings(t *testing.T) {
	_, url := startWebServer(t, Config{})
	c := dialWSClient(t, url, nil, "v12.stomp")
	c.connect()
	c.text(frame("SUBSCRIBE", "", "id:1", "destination:/queue/frag"))
	c.send(ws.OpText, false, []byte("SEND\ndestination:/qu"))
	c.send(ws.OpPing, true, []byte("ping-1"))
	c.send(ws.OpContinuation, false, []byte("eue/frag\nreceipt:r-frag\n\nhel"))
	c.send(ws.OpPing, true, []byte("ping-2"))
	c.send(ws.OpContinuation, true, []byte("lo\x00"))
	for _, want := range []string{"ping-1", "ping-2"} {
		f := c.readFrame()
		if f.Header.OpCode != ws.OpPong || string(f.Payload) != want {
			t.Fatalf("got %v %q, want pong %q", f.Header.OpCode, f.Payload, want)
		}
	}
	var got []string
	for range 2 {
		f, _ := c.next()
		switch f.Command {
		case frames.CmdMessage:
			got = append(got, "MESSAGE "+string(f.Body))
		case frames.CmdReceipt:
			got = append(got, "RECEIPT "+header(f, "receipt-id"))
		default:
			t.Fatalf("got %s %v", f.Command, f.Headers)
		}
	}
	if strings.Join(got, ", ") != "MESSAGE hello, RECEIPT r-frag" {
		t.Fatalf("got %v, want the one SEND's MESSAGE and RECEIPT", got)
	}
	// The connection carries on.
	c.text(frame("SEND", "again", "destination:/queue/frag"))
	if f, _ := c.next(); f.Command != frames.CmdMessage || string(f.Body) != "again" {
		t.Fatalf("got %s %q", f.Command, f.Body)
	}
}

// The per-message limit is enforced from the WebSocket header alone: the
// client announces far more than the limit, sends a few bytes and waits;
// the server answers ERROR frame-too-large and close 1009 without waiting
// for the rest. MaxMessage follows the broker's frame limits.
func TestWebSocketMessageTooBig(t *testing.T) {
	_, url := startWebServer(t, Config{Broker: broker.Config{Frame: frames.Limits{MaxBody: 1024}}})
	want := errorWant{message: "frame too large", code: "frame-too-large"}
	mask := [4]byte{9, 8, 7, 6}
	hdr := func(op ws.OpCode, fin bool, length int64) []byte {
		var b bytes.Buffer
		_ = ws.WriteHeader(&b, ws.Header{Fin: fin, OpCode: op, Masked: true, Mask: mask, Length: length})
		return b.Bytes()
	}
	tests := []struct {
		name string
		wire func() []byte
	}{
		{"1 MiB announced", func() []byte {
			return append(hdr(ws.OpText, true, 1<<20), "SEND\ndesti"...)
		}},
		{"64 KiB + 1 KiB announced", func() []byte {
			return append(hdr(ws.OpBinary, true, 65<<10+500), "SEND\n"...)
		}},
		{"fragments adding up past the limit", func() []byte {
			first := ws.MaskFrameInPlace(ws.NewFrame(ws.OpText, false, bytes.Repeat([]byte("\n"), 60000)))
			var b bytes.Buffer
			_ = ws.WriteFrame(&b, first)
			b.Write(hdr(ws.OpContinuation, true, 10000))
			b.WriteString("\n\n")
			return b.Bytes()
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialWSClient(t, url, nil, "v12.stomp")
			c.connect()
			c.raw(tt.wire())
			f, _ := c.next() // fails after 5s if the server waits for the payload
			checkERROR(t, f, want)
			c.expectClose(ws.StatusMessageTooBig)
		})
	}
	// Just under the limit a message is read (and then judged by STOMP).
	c := dialWSClient(t, url, nil, "v12.stomp")
	c.connect()
	c.text(frame("SUBSCRIBE", "", "id:1", "destination:/queue/fits"))
	pad := []string{"destination:/queue/fits"}
	for i := range 7 { // 7 header lines of 8,000 bytes: 56 KB of headers
		pad = append(pad, "x-pad-"+string(rune('a'+i))+":"+strings.Repeat("p", 8000-8))
	}
	c.text(frame("SEND", strings.Repeat("b", 1024), pad...))
	if f, _ := c.next(); f.Command != frames.CmdMessage || len(f.Body) != 1024 {
		t.Fatalf("a 57 KB message under the limit: got %s with %d body bytes (%s)", f.Command, len(f.Body), header(f, "message"))
	}
}

// A STOMP frame over the broker's limit inside a WebSocket message of an
// acceptable size: the STOMP parser refuses it, and the close code is 1009
// all the same.
func TestWebSocketFrameTooLarge(t *testing.T) {
	_, url := startWebServer(t, Config{Broker: broker.Config{Frame: frames.Limits{MaxBody: 1024}}})
	c := dialWSClient(t, url, nil, "v12.stomp")
	c.connect()
	c.text(frame("SEND", strings.Repeat("z", 2048), "destination:/queue/big", "content-length:2048"))
	f, _ := c.next()
	checkERROR(t, f, errorWant{message: "frame too large", code: "frame-too-large"})
	c.expectClose(ws.StatusMessageTooBig)
}

// WebSocket message boundaries and STOMP frame boundaries are independent
// inbound: several frames in one message, one frame across many messages
// (stomp.js splits large frames at 8 KiB), even one byte per message.
func TestWebSocketFramesAcrossMessages(t *testing.T) {
	_, url := startWebServer(t, Config{})
	c := dialWSClient(t, url, nil, "v12.stomp")
	c.connect()
	c.text(frame("SUBSCRIBE", "", "id:1", "destination:/queue/split") +
		frame("SEND", "one", "destination:/queue/split") +
		frame("SEND", "two", "destination:/queue/split"))
	for _, want := range []string{"one", "two"} {
		if f, _ := c.next(); f.Command != frames.CmdMessage || string(f.Body) != want {
			t.Fatalf("got %s %q, want MESSAGE %q", f.Command, f.Body, want)
		}
	}

	body := strings.Repeat("0123456789abcdef", 1500) // 24,000 bytes
	big := frame("SEND", body, "destination:/queue/split", "content-type:text/plain")
	for i := 0; i < len(big); i += 8 << 10 {
		c.text(big[i:min(i+8<<10, len(big))])
	}
	f, op := c.next()
	if f.Command != frames.CmdMessage || string(f.Body) != body || op != ws.OpText {
		t.Fatalf("8 KiB chunks: got %s %v with %d body bytes, want a text MESSAGE of %d", f.Command, op, len(f.Body), len(body))
	}

	small := frame("SEND", "bytes", "destination:/queue/split")
	for i := range len(small) {
		c.send(ws.OpBinary, true, []byte{small[i]})
	}
	if f, _ := c.next(); f.Command != frames.CmdMessage || string(f.Body) != "bytes" {
		t.Fatalf("one byte per message: got %s %q", f.Command, f.Body)
	}
}

// Outbound, each STOMP frame is its own WebSocket message, even when the
// writer sends several at once: text when the frame is UTF-8, binary when
// its body is not.
func TestWebSocketOneFramePerMessage(t *testing.T) {
	srv, url := startWebServer(t, Config{})
	c := dialWSClient(t, url, nil, "v12.stomp")
	c.connect()
	c.text(frame("SUBSCRIBE", "", "id:1", "destination:/topic/out", "receipt:sub"))
	if f, _ := c.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("got %s, want RECEIPT", f.Command)
	}
	// The three SENDs arrive in one write from another connection, so the
	// subscriber's writer is likely to take all three in one batch.
	p := dialRaw(t, srv.addr)
	p.connect()
	p.send(frame("SEND", "héllo", "destination:/topic/out") +
		frame("SEND", "\xff\x00\x01", "destination:/topic/out", "content-length:3") +
		frame("SEND", "plain", "destination:/topic/out"))
	wants := []struct {
		body string
		op   ws.OpCode
	}{{"héllo", ws.OpText}, {"\xff\x00\x01", ws.OpBinary}, {"plain", ws.OpText}}
	for _, want := range wants {
		f, op := c.next() // exactly one frame per message
		if f.Command != frames.CmdMessage || string(f.Body) != want.body {
			t.Fatalf("got %s %q, want MESSAGE %q", f.Command, f.Body, want.body)
		}
		if op != want.op {
			t.Errorf("body %q sent as %v, want %v", want.body, op, want.op)
		}
	}
}
