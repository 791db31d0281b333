package broker

import (
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// fakeTransport stands in for a connection driver: it only counts Wakes.
// Tests drive the session's read side with Feed and take its output with
// AppendOutput themselves, on one goroutine.
type fakeTransport struct{ wakes, pokes atomic.Int64 }

func (t *fakeTransport) Wake() { t.wakes.Add(1) }

// Close counts as a Wake: the fake driver only ever takes output.
func (t *fakeTransport) Close(CloseReason) { t.wakes.Add(1) }

// Poke is counted; tests call Session.Poked themselves.
func (t *fakeTransport) Poke() { t.pokes.Add(1) }

// client is the peer of one Session: it writes wire bytes into Feed and
// parses what AppendOutput yields into owned frames.
type client struct {
	t       testing.TB
	s       *Session
	tr      *fakeTransport
	version frames.Version // for encoding frames; 1.2 until connect says otherwise
	parser  *frames.Parser
	out     []byte // reused output buffer
	got     []*frames.Frame
	closing bool // AppendOutput said the session is closing
}

func newClient(t testing.TB, b *Broker) *client {
	tr := &fakeTransport{}
	return &client{t: t, s: b.NewSession(tr, "test"), tr: tr, version: frames.V12,
		parser: frames.NewParser(frames.Limits{MaxBody: 64 << 20})}
}

// HandleFrame and HandleHeartbeat make client the parser's handler.
func (c *client) HandleFrame(f *frames.Frame) error {
	c.got = append(c.got, f.Clone())
	return nil
}

func (c *client) HandleHeartbeat() error { return nil }

// feed hands raw wire bytes to the session (a copy: Feed decodes in place).
func (c *client) feed(wire string) error {
	return c.s.Feed([]byte(wire))
}

// send encodes one frame with "key:value" headers and feeds it.
func (c *client) send(cmd frames.Command, body string, headers ...string) error {
	return c.s.Feed(wireFrame(c.version, cmd, body, headers...))
}

// mustSend is send for frames that must not end the session.
func (c *client) mustSend(cmd frames.Command, body string, headers ...string) {
	c.t.Helper()
	if err := c.send(cmd, body, headers...); err != nil {
		c.t.Fatalf("%s: %v", cmd, err)
	}
}

// poll takes the session's pending output and returns the frames in it.
func (c *client) poll() []*frames.Frame {
	c.t.Helper()
	var closing bool
	c.out, closing = c.s.AppendOutput(c.out[:0])
	c.closing = c.closing || closing
	c.got = c.got[:0]
	if err := c.parser.Parse(c.out, c); err != nil {
		c.t.Fatalf("server output does not parse: %v\n%q", err, c.out)
	}
	return append([]*frames.Frame(nil), c.got...)
}

// next polls and returns the one frame expected, failing otherwise.
func (c *client) next() *frames.Frame {
	c.t.Helper()
	fs := c.poll()
	if len(fs) != 1 {
		c.t.Fatalf("got %d frames, want 1: %v", len(fs), commands(fs))
	}
	return fs[0]
}

// connect sends CONNECT (accept-version 1.2 unless a header says
// otherwise) and returns CONNECTED.
func (c *client) connect(headers ...string) *frames.Frame {
	c.t.Helper()
	if !hasKey(headers, "accept-version") {
		headers = append([]string{"accept-version:1.2"}, headers...)
	}
	c.version = frames.V12 // what a CONNECT is read as
	c.mustSend(frames.CmdConnect, "", headers...)
	f := c.next()
	if f.Command != frames.CmdConnected {
		c.t.Fatalf("got %s (%s), want CONNECTED", f.Command, hdr(f, "message"))
	}
	switch hdr(f, "version") {
	case "1.0":
		c.version = frames.V10
	case "1.1":
		c.version = frames.V11
	}
	c.parser.SetVersion(c.version)
	return f
}

// wireFrame encodes a frame with "key:value" headers for version v.
func wireFrame(v frames.Version, cmd frames.Command, body string, headers ...string) []byte {
	f := frames.Frame{Command: cmd}
	for _, h := range headers {
		k, val, _ := strings.Cut(h, ":")
		f.Headers = append(f.Headers, frames.Header{Key: []byte(k), Value: []byte(val)})
	}
	if body != "" {
		f.Body = []byte(body)
	}
	return frames.AppendFrame(nil, v, &f)
}

func hasKey(headers []string, key string) bool {
	for _, h := range headers {
		if strings.HasPrefix(h, key+":") {
			return true
		}
	}
	return false
}

// hdr returns a header's value ("" when absent).
func hdr(f *frames.Frame, key string) string {
	v, _ := f.Header(key)
	return string(v)
}

func commands(fs []*frames.Frame) []string {
	var cs []string
	for _, f := range fs {
		cs = append(cs, f.Command.String())
	}
	return cs
}

// headerLines renders a frame's headers in wire order as "k:v" strings.
func headerLines(f *frames.Frame) []string {
	var hs []string
	for _, h := range f.Headers {
		hs = append(hs, string(h.Key)+":"+string(h.Value))
	}
	return hs
}

func isClosed(err error) bool { return errors.Is(err, ErrSessionClosed) }
