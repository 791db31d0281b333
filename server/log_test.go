package server

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a log sink safe for the server's goroutines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// One debug line per connection open and close; an ERROR is logged at warn
// with its error-code and the remote address; a passcode never appears.
func TestLogLines(t *testing.T) {
	var logs lockedBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := startServer(t, Config{Logger: logger, Linger: 50 * time.Millisecond})
	c := dialRaw(t, srv.addr)
	c.send("CONNECT\naccept-version:1.2\nhost:h\nlogin:alice\npasscode:s3cret-pass\n\n\x00")
	c.next(5 * time.Second)
	c.send(frame("SEND", "x", "destination:/nowhere"))
	if f := c.next(5 * time.Second); f.Command.String() != "ERROR" {
		t.Fatalf("got %s, want ERROR", f.Command)
	}
	c.expectClosed(5 * time.Second)
	var text string
	for range 100 { // the close line is written after the socket closes
		if text = logs.String(); strings.Contains(text, "connection closed") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	local := c.conn.LocalAddr().String()
	for _, want := range []string{
		`level=DEBUG msg="connection opened"`,
		`level=WARN msg="session error"`,
		"error_code=invalid-destination",
		"remote=" + local,
		`level=DEBUG msg="connection closed"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("log lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "s3cret-pass") {
		t.Fatalf("the passcode reached the log:\n%s", text)
	}
}
