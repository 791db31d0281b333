package server

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// testServer is a whole broker on 127.0.0.1:0, shut down when the test ends.
type testServer struct {
	*Server
	addr string
}

// startServer starts a server with cfg on a loopback port chosen by the
// kernel and registers its shutdown (and the check that Serve returned
// ErrServerClosed) with t.Cleanup.
func startServer(t testing.TB, cfg Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ConnectionDriver == "" {
		// make test runs this package once more with the goroutine driver.
		cfg.ConnectionDriver = os.Getenv("STOMPBOX_TEST_DRIVER")
	}
	srv := New(cfg)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	// Serving has begun once the listener is registered: what a test
	// asks next (/readyz, Shutdown) then sees a serving server. Bounded:
	// a Serve that fails at once is the test's to report.
	for range 2000 {
		srv.mu.Lock()
		serving := len(srv.listeners) > 0
		srv.mu.Unlock()
		if serving {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return &testServer{Server: srv, addr: ln.Addr().String()}
}

// rawClient speaks STOMP byte-for-byte over a plain socket, for what a
// library client cannot express (malformed frames, exact ERROR headers,
// heart-beat timing).
type rawClient struct {
	t      testing.TB
	conn   net.Conn
	parser *frames.Parser
	events chan rawEvent
}

// rawEvent is one frame (owned copy) or heart-beat the server sent, or the
// end of the stream (err set).
type rawEvent struct {
	frame     *frames.Frame
	heartbeat bool
	at        time.Time
	err       error
}

type rawHandler struct{ events chan<- rawEvent }

func (h rawHandler) HandleFrame(f *frames.Frame) error {
	h.events <- rawEvent{frame: f.Clone(), at: time.Now()}
	return nil
}

func (h rawHandler) HandleHeartbeat() error {
	h.events <- rawEvent{heartbeat: true, at: time.Now()}
	return nil
}

// dialRaw connects a raw client; its reader goroutine ends when the
// connection closes (closed by t.Cleanup at the latest).
func dialRaw(t testing.TB, addr string) *rawClient {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return newRawClient(t, conn)
}

// newRawClient is dialRaw for a connection the caller dialed.
func newRawClient(t testing.TB, conn net.Conn) *rawClient {
	c := &rawClient{t: t, conn: conn, parser: frames.NewParser(frames.Limits{MaxBody: 64 << 20}), events: make(chan rawEvent, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		r := bufio.NewReader(conn)
		buf := make([]byte, 4096)
		h := rawHandler{events: c.events}
		for {
			n, err := r.Read(buf)
			if n > 0 {
				if perr := c.parser.Parse(buf[:n], h); perr != nil {
					c.events <- rawEvent{err: perr}
					return
				}
			}
			if err != nil {
				c.events <- rawEvent{err: err, at: time.Now()}
				return
			}
		}
	}()
	t.Cleanup(func() {
		_ = conn.Close()
		<-done
	})
	return c
}

// send writes raw bytes.
func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := c.conn.Write([]byte(s)); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame, skipping heart-beats, or fails the test
// after timeout.
func (c *rawClient) next(timeout time.Duration) *frames.Frame {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-c.events:
			if ev.err != nil {
				c.t.Fatalf("stream ended while waiting for a frame: %v", ev.err)
			}
			if ev.heartbeat {
				continue
			}
			return ev.frame
		case <-deadline:
			c.t.Fatalf("no frame within %v", timeout)
			return nil
		}
	}
}

// expectClosed waits for the server to close the connection, ignoring
// heart-beats, and fails on any frame.
func (c *rawClient) expectClosed(timeout time.Duration) time.Time {
	c.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case ev := <-c.events:
			if ev.err != nil {
				return ev.at
			}
			if ev.frame != nil {
				c.t.Fatalf("frame %s while waiting for close", ev.frame.Command)
			}
		case <-deadline:
			c.t.Fatalf("connection still open after %v", timeout)
			return time.Time{}
		}
	}
}

// connect sends CONNECT with extra header lines ("k:v") and returns the
// CONNECTED frame.
func (c *rawClient) connect(headers ...string) *frames.Frame {
	c.t.Helper()
	c.send("CONNECT\naccept-version:1.2\nhost:test\n" + joinLines(headers) + "\n\x00")
	f := c.next(5 * time.Second)
	if f.Command != frames.CmdConnected {
		c.t.Fatalf("got %s (%s), want CONNECTED", f.Command, header(f, "message"))
	}
	return f
}

func joinLines(lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return strings.Join(lines, "\n") + "\n"
}

// header returns a header's value as a string ("" if absent).
func header(f *frames.Frame, key string) string {
	v, _ := f.Header(key)
	return string(v)
}

// frame builds a frame's wire bytes: command, "k:v" header lines, body.
func frame(command string, body string, headers ...string) string {
	return command + "\n" + joinLines(headers) + "\n" + body + "\x00"
}
