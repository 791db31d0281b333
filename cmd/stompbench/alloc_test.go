package main

import (
	"sync/atomic"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// The per-message work of producers and consumers does not allocate once
// its buffers have grown: the generator must not be what limits a run.
func TestSteadyStateAllocations(t *testing.T) {
	cfg := config(t)
	enc := newSendEncoder(&cfg, 0, true, true)
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(1000, func() { buf = enc.appendSend(buf[:0], 123456, 987654321) }); n != 0 {
		t.Errorf("appendSend: %.1f allocations per SEND", n)
	}

	// Parse one MESSAGE as the reader would, with ACK appended to out.
	p := frames.NewParser(frames.Limits{})
	r := &runner{cfg: &cfg}
	c := &conn{out: make([]byte, 0, 1<<20)}
	k := &consumer{r: r, c: c, producers: 1, order: newOrder(1, true, "consumer 0"), ack: true,
		total: new(atomic.Int64), expected: 1 << 40, done: make(chan struct{})}
	h := handlerFunc(k.onMessage) // as the reader holds it: made once
	var seq int64
	wire := make([]byte, 0, 512)
	allocs := testing.AllocsPerRun(1000, func() {
		wire = wire[:0]
		wire = append(wire, "MESSAGE\ndestination:/queue/x\nsubscription:0\nmessage-id:7\nack:7\n"+hdrProducer+":0\n"+hdrSeq+":"...)
		wire = appendInt(wire, seq)
		wire = append(wire, "\n"+hdrSentAt+":5\ncontent-length:4\n\nbody\x00"...)
		seq++
		c.out = c.out[:0]
		if err := p.Parse(wire, h); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("consumer: %.1f allocations per MESSAGE", allocs)
	}
	if string(c.out) != "ACK\nid:7\n\n\x00" {
		t.Errorf("ACK %q", c.out)
	}
}

// handlerFunc adapts a MESSAGE callback to frames.Handler.
type handlerFunc func(f *frames.Frame) error

func (h handlerFunc) HandleFrame(f *frames.Frame) error { return h(f) }
func (h handlerFunc) HandleHeartbeat() error            { return nil }

func appendInt(b []byte, n int64) []byte {
	if n >= 10 {
		b = appendInt(b, n/10)
	}
	return append(b, byte('0'+n%10))
}
