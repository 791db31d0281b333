package server

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// resumeBenchMessages is what arrives for a parked session before it is
// resumed in BenchmarkResume10kTCP.
const resumeBenchMessages = 10_000

// resumeReader counts MESSAGE frames and keeps the last CONNECTED's
// resume-token.
type resumeReader struct {
	messages int
	token    string
	other    frames.Command
}

func (h *resumeReader) HandleFrame(f *frames.Frame) error {
	switch f.Command {
	case frames.CmdMessage:
		h.messages++
	case frames.CmdConnected:
		v, _ := f.Header("resume-token")
		h.token = string(v)
		h.other = f.Command
	default:
		h.other = f.Command
	}
	return nil
}

func (h *resumeReader) HandleHeartbeat() error { return nil }

// resumeBenchConn is a lean native STOMP client for the benchmark.
type resumeBenchConn struct {
	conn   net.Conn
	parser *frames.Parser
	buf    []byte
	h      resumeReader
}

func dialResumeBench(b *testing.B, addr string, headers ...string) *resumeBenchConn {
	b.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	c := &resumeBenchConn{conn: conn, parser: frames.NewParser(frames.Limits{}), buf: make([]byte, 64<<10)}
	c.send(b, frame("CONNECT", "", append(headers, "accept-version:1.2", "host:bench", "heart-beat:0,0")...))
	return c
}

func (c *resumeBenchConn) send(b *testing.B, wire string) {
	if _, err := c.conn.Write([]byte(wire)); err != nil {
		b.Fatal(err)
	}
}

// until reads until done reports true (bounded by a 10s deadline).
func (c *resumeBenchConn) until(b *testing.B, done func() bool) {
	b.Helper()
	_ = c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	for !done() {
		n, err := c.conn.Read(c.buf)
		if n > 0 {
			if perr := c.parser.Parse(c.buf[:n], &c.h); perr != nil {
				b.Fatal(perr)
			}
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}

// nextControl reads up to the next frame that is not a MESSAGE.
func (c *resumeBenchConn) nextControl(b *testing.B) frames.Command {
	c.h.other = 0
	c.until(b, func() bool { return c.h.other != 0 })
	return c.h.other
}

// BenchmarkResume10kTCP: a session subscribed to a topic drops; 10,000
// messages (100-byte bodies) arrive for it while it is parked; the
// benchmark times the resume, from writing CONNECT with its resume-token
// to reading the last of the 10,000 MESSAGEs, over native STOMP on
// loopback. Publishing and the drop are outside the timed part.
func BenchmarkResume10kTCP(b *testing.B) {
	srv := startServer(b, Config{MaxConnectionsPerIP: -1, ConnectionRatePerIP: -1})
	body := strings.Repeat("x", 100)
	var sends []byte
	for i := range resumeBenchMessages {
		sends = append(sends, frame("SEND", body, "destination:/topic/resume.bench", "seq:"+strconv.Itoa(i))...)
	}
	sends = append(sends, frame("SEND", body, "destination:/topic/resume.other", "receipt:done")...)
	pub := dialResumeBench(b, srv.addr)
	if pub.nextControl(b) != frames.CmdConnected {
		b.Fatal("publisher not connected")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		a := dialResumeBench(b, srv.addr)
		if a.nextControl(b) != frames.CmdConnected {
			b.Fatal("not connected")
		}
		token := a.h.token
		a.send(b, frame("SUBSCRIBE", "", "id:s", "destination:/topic/resume.bench", "receipt:sub"))
		if a.nextControl(b) != frames.CmdReceipt {
			b.Fatal("no RECEIPT for SUBSCRIBE")
		}
		parked := srv.Broker().ParkedSessions()
		_ = a.conn.Close()
		for i := 0; srv.Broker().ParkedSessions() != parked+1; i++ {
			if i == 1000 {
				b.Fatal("not parked")
			}
			time.Sleep(time.Millisecond)
		}
		pub.send(b, string(sends))
		if cmd := pub.nextControl(b); cmd != frames.CmdReceipt {
			b.Fatalf("publisher got %v, want RECEIPT", cmd)
		}
		b.StartTimer()
		r := dialResumeBench(b, srv.addr, "resume-token:"+token)
		r.until(b, func() bool { return r.h.messages == resumeBenchMessages })
		b.StopTimer()
		r.send(b, frame("DISCONNECT", "", "receipt:bye"))
		if r.nextControl(b) != frames.CmdReceipt {
			b.Fatal("no RECEIPT for DISCONNECT")
		}
		_ = r.conn.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(resumeBenchMessages)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
