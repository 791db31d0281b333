package server

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// pipeWindow is how many receipted SENDs a pipelining producer keeps in
// flight (RabbitMQ publisher confirms with a window, as in issue 12).
const pipeWindow = 128

// pipeBenchTarget is where the pipelined benchmark connects: an in-process
// stompbox, or the broker at STOMPBOX_BENCH_ADDR (host:port, login and
// passcode guest, virtual host "/": RabbitMQ's STOMP plugin defaults) for
// a same-run comparison.
type pipeBenchTarget struct {
	addr    string
	connect []byte
	fsyncs  func() uint64 // nil for an external broker
}

func pipelineTarget(b *testing.B) pipeBenchTarget {
	if addr := os.Getenv("STOMPBOX_BENCH_ADDR"); addr != "" {
		return pipeBenchTarget{addr: addr,
			connect: []byte("CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")}
	}
	j := benchJournal(b)
	srv := startServer(b, bigQueues(j))
	return pipeBenchTarget{addr: srv.addr, connect: []byte("CONNECT\naccept-version:1.2\nhost:b\n\n\x00"),
		fsyncs: func() uint64 { return j.Stats().Fsyncs }}
}

// pipeBenchConn is a raw STOMP connection whose reader goroutine hands every
// frame to handle; the reader ends when the connection closes.
type pipeBenchConn struct {
	conn net.Conn
	done chan error // the reader's end
}

// dialPipeBench connects; afterChunk (if not nil) runs on the reader after the
// frames of each read chunk were handled.
func dialPipeBench(b *testing.B, t pipeBenchTarget, handle func(*frames.Frame) error, afterChunk func() error) *pipeBenchConn {
	conn, err := net.Dial("tcp", t.addr)
	if err != nil {
		b.Fatal(err)
	}
	c := &pipeBenchConn{conn: conn, done: make(chan error, 1)}
	connected := make(chan struct{})
	h := pipeBenchHandler{handle: func(f *frames.Frame) error {
		if f.Command == frames.CmdConnected {
			close(connected)
			return nil
		}
		return handle(f)
	}}
	go func() {
		p := frames.NewParser(frames.Limits{})
		buf := make([]byte, 64<<10)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				perr := p.Parse(buf[:n], h)
				if perr == nil && afterChunk != nil {
					perr = afterChunk()
				}
				if perr != nil {
					c.done <- perr
					return
				}
			}
			if err != nil {
				c.done <- err
				return
			}
		}
	}()
	b.Cleanup(func() {
		_ = conn.Close()
		<-c.done
	})
	if _, err := conn.Write(t.connect); err != nil {
		b.Fatal(err)
	}
	select {
	case <-connected:
	case err := <-c.done:
		b.Fatalf("connect: %v", err)
	case <-time.After(10 * time.Second):
		b.Fatal("no CONNECTED in 10s")
	}
	return c
}

type pipeBenchHandler struct{ handle func(*frames.Frame) error }

func (h pipeBenchHandler) HandleFrame(f *frames.Frame) error { return h.handle(f) }
func (h pipeBenchHandler) HandleHeartbeat() error            { return nil }

// windowProducer keeps up to pipeWindow receipted persistent SENDs in
// flight: it writes as many as the window has room for in one write, and
// its reader opens the window again as RECEIPTs arrive.
type windowProducer struct {
	c        *pipeBenchConn
	send     []byte
	mu       sync.Mutex
	cond     *sync.Cond
	inflight int
	failed   error
}

func newWindowProducer(b *testing.B, t pipeBenchTarget, queue string) *windowProducer {
	p := &windowProducer{}
	p.cond = sync.NewCond(&p.mu)
	p.send = frames.AppendFrame(nil, frames.V12, &frames.Frame{Command: frames.CmdSend, Headers: []frames.Header{
		{Key: []byte("destination"), Value: []byte(queue)},
		{Key: []byte("persistent"), Value: []byte("true")},
		{Key: []byte("receipt"), Value: []byte("r")},
	}, Body: make([]byte, 128)})
	p.c = dialPipeBench(b, t, func(f *frames.Frame) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		if f.Command != frames.CmdReceipt {
			p.failed = fmt.Errorf("producer got %s: %s %s", f.Command, header(f, "message"), f.Body)
		} else {
			p.inflight--
		}
		p.cond.Broadcast()
		return nil
	}, nil)
	return p
}

// run sends n SENDs and waits for all their RECEIPTs.
func (p *windowProducer) run(n int) error {
	var batch []byte
	for sent := 0; sent < n; {
		p.mu.Lock()
		for p.inflight >= pipeWindow && p.failed == nil {
			p.cond.Wait()
		}
		room := min(pipeWindow-p.inflight, n-sent)
		p.inflight += room
		err := p.failed
		p.mu.Unlock()
		if err != nil {
			return err
		}
		batch = batch[:0]
		for range room {
			batch = append(batch, p.send...)
		}
		if _, err := p.c.conn.Write(batch); err != nil {
			return err
		}
		sent += room
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.inflight > 0 && p.failed == nil {
		p.cond.Wait()
	}
	return p.failed
}

// ackingConsumer acknowledges every MESSAGE (client-individual), the ACKs
// of one read chunk in one write, and says when it has seen want messages.
type ackingConsumer struct {
	c    *pipeBenchConn
	seen atomic.Int64
	want int64
	all  chan struct{} // closed once want messages were seen
}

func newAckingConsumer(b *testing.B, t pipeBenchTarget, queue string, want int) *ackingConsumer {
	a := &ackingConsumer{want: int64(want), all: make(chan struct{})}
	var c *pipeBenchConn
	var pending []byte // ACKs of the chunk being parsed (reader goroutine only)
	c = dialPipeBench(b, t, func(f *frames.Frame) error {
		if f.Command != frames.CmdMessage {
			return fmt.Errorf("consumer got %s: %s", f.Command, f.Body)
		}
		id, _ := f.Header("ack")
		pending = append(append(append(pending, "ACK\nid:"...), id...), "\n\n\x00"...)
		if a.seen.Add(1) == a.want {
			close(a.all)
		}
		return nil
	}, func() error {
		if len(pending) == 0 {
			return nil
		}
		_, err := c.conn.Write(pending)
		pending = pending[:0]
		return err
	})
	a.c = c
	sub := "SUBSCRIBE\nid:s\ndestination:" + queue + "\nack:client-individual\n\n\x00"
	if _, err := c.conn.Write([]byte(sub)); err != nil {
		b.Fatal(err)
	}
	return a
}

// BenchmarkPipelinedPersistentTCP: producers each keep up to 128
// receipted persistent SENDs (128 B) in flight; one client-individual
// consumer ACKs every message. Journal sync always on the temporary
// directory's disk. msgs/s counts messages received by the consumer; the
// time ends when every RECEIPT and every MESSAGE has arrived.
// STOMPBOX_BENCH_ADDR runs the same against another broker.
func BenchmarkPipelinedPersistentTCP(b *testing.B) {
	for _, n := range []int{1, 64} {
		b.Run(fmt.Sprintf("producers-%d", n), func(b *testing.B) {
			t := pipelineTarget(b)
			queue := "/queue/bench-pipe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
			cons := newAckingConsumer(b, t, queue, b.N)
			producers := make([]*windowProducer, n)
			for i := range producers {
				producers[i] = newWindowProducer(b, t, queue)
			}
			var before uint64
			if t.fsyncs != nil {
				before = t.fsyncs()
			}
			b.ResetTimer()
			start := time.Now()
			goShares(b, len(producers), func(i, count int) error { return producers[i].run(count) })
			select {
			case <-cons.all:
			case err := <-cons.c.done:
				b.Fatalf("consumer ended: %v", err)
			case <-time.After(60 * time.Second):
				b.Fatalf("consumer saw %d of %d messages", cons.seen.Load(), b.N)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
			if t.fsyncs != nil {
				b.ReportMetric(float64(t.fsyncs()-before)/float64(b.N), "fsyncs/msg")
			}
		})
	}
}
