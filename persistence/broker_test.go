package persistence

import (
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// These tests run a broker on a real File: what the broker journals, and
// what a restart (Close, Open, a new broker, Recover) brings back.

// pokeTransport is a connection driver that never writes on its own: a
// test takes a session's output with peer.poll, or never does (a
// consumer whose socket is gone). It keeps the session's pokes (a
// pipelined persistent SEND's journal write completed) for peer.next to
// answer, as a driver's read loop does.
type pokeTransport struct{ poked chan struct{} }

func (pokeTransport) Wake()                    {}
func (pokeTransport) Close(broker.CloseReason) {}
func (t pokeTransport) Poke() {
	select {
	case t.poked <- struct{}{}:
	default:
	}
}

// peer drives one Session with wire frames and parses its output.
type peer struct {
	t      testing.TB
	s      *broker.Session
	tr     pokeTransport
	parser *frames.Parser
	out    []byte
	got    []*frames.Frame
}

func newPeer(t testing.TB, b *broker.Broker) *peer { return newPeerAs(t, b) }

// newPeerAs is newPeer with more CONNECT headers.
func newPeerAs(t testing.TB, b *broker.Broker, connect ...string) *peer {
	t.Helper()
	tr := pokeTransport{poked: make(chan struct{}, 1)}
	p := &peer{t: t, s: b.NewSession(tr, "test"), tr: tr, parser: frames.NewParser(frames.Limits{MaxBody: 64 << 20})}
	p.send(frames.CmdConnect, "", append([]string{"accept-version:1.2", "host:test"}, connect...)...)
	if f := p.next(); f.Command != frames.CmdConnected {
		t.Fatalf("CONNECT: got %s %q", f.Command, f.Body)
	}
	return p
}

func (p *peer) HandleFrame(f *frames.Frame) error { p.got = append(p.got, f.Clone()); return nil }
func (p *peer) HandleHeartbeat() error            { return nil }

// send feeds one frame with "key:value" headers.
func (p *peer) send(cmd frames.Command, body string, headers ...string) {
	p.t.Helper()
	f := frames.Frame{Command: cmd}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		f.Headers = append(f.Headers, frames.Header{Key: []byte(k), Value: []byte(v)})
	}
	if body != "" {
		f.Body = []byte(body)
	}
	if err := p.s.Feed(frames.AppendFrame(nil, frames.V12, &f)); err != nil {
		p.t.Fatalf("%s: %v", cmd, err)
	}
}

// poll takes the session's output as the writer would and parses it.
func (p *peer) poll() []*frames.Frame {
	p.t.Helper()
	p.out, _ = p.s.AppendOutput(p.out[:0])
	p.got = p.got[:0]
	if err := p.parser.Parse(p.out, p); err != nil {
		p.t.Fatalf("output does not parse: %v", err)
	}
	return append([]*frames.Frame(nil), p.got...)
}

// next is the one frame the session has for the writer, waiting (5 s at
// most) for the pokes of journal writes it may be waiting for.
func (p *peer) next() *frames.Frame {
	p.t.Helper()
	fs := p.poll()
	deadline := time.After(5 * time.Second)
	for len(fs) == 0 {
		select {
		case <-p.tr.poked:
		case <-deadline:
			p.t.Fatal("no frame within 5 s")
		}
		if err := p.s.Poked(); err != nil {
			p.t.Fatalf("Poked: %v", err)
		}
		fs = p.poll()
	}
	if len(fs) != 1 {
		p.t.Fatalf("got %d frames, want 1", len(fs))
	}
	return fs[0]
}

// sendPersistent sends persistent messages to dest, each with a receipt.
func (p *peer) sendPersistent(dest string, bodies ...string) {
	p.t.Helper()
	for _, body := range bodies {
		p.send(frames.CmdSend, body, "destination:"+dest, "persistent:true", "receipt:r")
		if f := p.next(); f.Command != frames.CmdReceipt {
			p.t.Fatalf("SEND %q: got %s %q", body, f.Command, f.Body)
		}
	}
}

func header(f *frames.Frame, key string) string {
	v, _ := f.Header(key)
	return string(v)
}

// startBroker opens the journal in dir and recovers a broker from it.
func startBroker(t testing.TB, dir string, cfg broker.Config) (*broker.Broker, *File) {
	t.Helper()
	f := open(t, dir, Config{})
	cfg.Journal = f
	b := broker.New(cfg)
	if err := b.Recover(); err != nil {
		t.Fatalf("Recover: %v", err)
	}
	return b, f
}

// liveBodies reopens the journal in dir (after the File using it was
// closed) and returns the bodies of its live enqueues to queue, in replay
// order.
func liveBodies(t testing.TB, dir, queue string) []string {
	t.Helper()
	f := open(t, dir, Config{})
	defer f.Close()
	var got []string
	for _, r := range replay(t, f) {
		if r.Op == broker.OpEnqueue && r.Queue == queue {
			got = append(got, string(r.Message.Body))
		}
	}
	return got
}

func mustClose(t testing.TB, f *File) {
	t.Helper()
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}
