package main

import (
	"bytes"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// flushAt is how many bytes a producer batches before writing them.
const flushAt = 32 << 10

// sendEncoder appends this producer's SEND frames: the constant parts are
// encoded once, so a frame costs two integers and two copies.
type sendEncoder struct {
	prefix []byte // SEND, destination, fixed headers, "stompbench-seq:"
	suffix []byte // content-length, blank line, body, NUL
	window bool   // each SEND asks for a receipt (its seq)
}

func newSendEncoder(cfg *Config, producer int, persistent, receipts bool) *sendEncoder {
	esc := frames.EscapingFor(frames.V12, frames.CmdSend)
	p := frames.AppendCommand(nil, frames.CmdSend)
	p = frames.AppendHeaderString(p, esc, "destination", cfg.Destination)
	p = frames.AppendHeaderString(p, esc, "content-type", "text/plain")
	if persistent {
		p = frames.AppendHeaderString(p, esc, "persistent", "true")
	}
	p = frames.AppendHeaderInt(p, esc, hdrProducer, int64(producer))
	p = append(p, hdrSeq+":"...)
	body := bytes.Repeat([]byte{'x'}, cfg.BodySize)
	return &sendEncoder{prefix: p, suffix: frames.AppendBody(nil, body), window: receipts}
}

// appendSend appends one SEND of message seq, stamped with sentAt.
func (e *sendEncoder) appendSend(dst []byte, seq, sentAt int64) []byte {
	dst = append(dst, e.prefix...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, "\n"+hdrSentAt+":"...)
	dst = strconv.AppendInt(dst, sentAt, 10)
	dst = append(dst, '\n')
	if e.window {
		dst = append(dst, "receipt:"...)
		dst = strconv.AppendInt(dst, seq, 10)
		dst = append(dst, '\n')
	}
	return append(dst, e.suffix...)
}

// producer is one producing connection.
type producer struct {
	r    *runner
	c    *conn
	enc  *sendEncoder
	sent atomic.Int64

	// With a window (persistent): one token per SEND awaiting its
	// RECEIPT, and when each was sent, by seq modulo the window.
	tokens   chan struct{}
	sentAt   []int64 // slot written by the producer before the SEND, read by the reader after its RECEIPT
	slotSeq  []int64
	receipts []int64 // reader only: receipt latencies, ns
	acked    int64   // reader only
	warmupNs int64   // receipts for SENDs before it are not measured
}

// send appends SEND seq and flushes when the batch is full.
func (p *producer) send(seq int64, sentAt int64, flushNow bool) error {
	p.c.wmu.Lock()
	p.c.out = p.enc.appendSend(p.c.out, seq, sentAt)
	var err error
	if flushNow || p.c.buffered() >= flushAt {
		err = p.c.flushLocked()
	}
	p.c.wmu.Unlock()
	p.sent.Add(1)
	return err
}

// flush writes what is batched.
func (p *producer) flush() error {
	p.c.wmu.Lock()
	defer p.c.wmu.Unlock()
	return p.c.flushLocked()
}

// runBurst sends n messages as fast as the broker takes them. lag, when
// set, is polled every 256 messages: it returns how many messages the
// slowest receiver is behind, and the producer waits while that exceeds
// maxLag (a topic has no backpressure: a subscriber left too far behind
// is a slow consumer and is dropped).
func (p *producer) runBurst(n int64, lag func(sent int64) int64, maxLag int64) error {
	for seq := range n {
		if p.tokens != nil {
			if err := p.takeToken(seq); err != nil {
				return err
			}
		}
		if err := p.send(seq, p.r.now(), false); err != nil {
			return p.writeErr(err)
		}
		if lag != nil && seq%256 == 255 {
			if err := p.waitLag(seq+1, lag, maxLag); err != nil {
				return err
			}
		}
	}
	return p.writeErr(p.flush())
}

// waitLag holds the producer while receivers are more than maxLag behind.
func (p *producer) waitLag(sent int64, lag func(int64) int64, maxLag int64) error {
	if lag(sent) <= maxLag {
		return nil
	}
	if err := p.flush(); err != nil {
		return p.writeErr(err)
	}
	for lag(sent) > maxLag/2 {
		if p.r.failed() {
			return errAborted
		}
		time.Sleep(100 * time.Microsecond)
	}
	return nil
}

// takeToken waits for room in the window, flushing first so the broker
// sees the SENDs whose receipts would make room.
func (p *producer) takeToken(seq int64) error {
	select {
	case p.tokens <- struct{}{}:
	default:
		if err := p.flush(); err != nil {
			return p.writeErr(err)
		}
		select {
		case p.tokens <- struct{}{}:
		case <-p.r.ctx.Done():
			return errAborted
		}
	}
	slot := seq % int64(len(p.sentAt))
	atomic.StoreInt64(&p.slotSeq[slot], seq)
	atomic.StoreInt64(&p.sentAt[slot], p.r.now())
	return nil
}

// onReceipt frees the window slot of the SEND the receipt is for.
func (p *producer) onReceipt(id []byte) error {
	seq, ok := parseInt(id)
	if !ok {
		return fmt.Errorf("unexpected RECEIPT %q", id)
	}
	slot := seq % int64(len(p.sentAt))
	if atomic.LoadInt64(&p.slotSeq[slot]) != seq {
		return fmt.Errorf("RECEIPT for %q, which is not awaiting one", id)
	}
	if at := atomic.LoadInt64(&p.sentAt[slot]); at >= p.warmupNs {
		p.receipts = append(p.receipts, p.r.now()-at)
	}
	p.acked++
	select {
	case <-p.tokens:
		return nil
	default:
		return fmt.Errorf("RECEIPT %q with no SEND awaiting one", id)
	}
}

// writeErr wraps a write failure; after the run failed it is an echo.
func (p *producer) writeErr(err error) error {
	if err == nil {
		return nil
	}
	if p.r.failed() {
		return errAborted
	}
	return fmt.Errorf("send: %w", err)
}

// consumer is one subscribed connection checking every delivery.
type consumer struct {
	r         *runner
	c         *conn
	producers int
	order     *order
	ledger    *ledger // nil: order alone is the check (gapless)
	ack       bool    // ACK each message (client-individual)
	count     atomic.Int64
	total     *atomic.Int64 // shared by the scenario's consumers
	expected  int64
	done      chan struct{} // closed by whoever counts the expected-th message
	latencies []int64       // reader only, with latency set: ns from intended send
	latency   bool
	warmupNs  int64
}

// onMessage checks one delivery, acknowledges it and counts it.
func (k *consumer) onMessage(f *frames.Frame) error {
	s, err := readStamp(f, k.producers)
	if err != nil {
		return err
	}
	if k.ledger != nil {
		if err := k.ledger.mark(s); err != nil {
			return err
		}
	}
	if err := k.order.check(s); err != nil {
		return err
	}
	if k.latency && s.sentAt >= k.warmupNs {
		k.latencies = append(k.latencies, k.r.now()-s.sentAt)
	}
	if k.ack {
		id, ok := f.Header("ack")
		if !ok {
			return fmt.Errorf("MESSAGE without an ack header (producer %d seq %d)", s.producer, s.seq)
		}
		k.c.wmu.Lock()
		k.c.out = frames.AppendCommand(k.c.out, frames.CmdAck)
		k.c.out = frames.AppendHeader(k.c.out, frames.EscapingFor(frames.V12, frames.CmdAck), []byte("id"), id)
		k.c.out = frames.AppendEnd(k.c.out)
		k.c.wmu.Unlock()
		k.c.pending = true
	}
	k.count.Add(1)
	if n := k.total.Add(1); n == k.expected {
		close(k.done)
	} else if n > k.expected {
		return fmt.Errorf("%w: %d deliveries, %d expected", errDuplicate, n, k.expected)
	}
	return nil
}
