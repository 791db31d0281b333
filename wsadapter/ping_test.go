package wsadapter

import (
	"bufio"
	"errors"
	"testing"

	"github.com/gobwas/ws"
)

// WritePing sends an empty ping the peer can answer, allocates nothing,
// and fails after the close handshake began.
func TestWritePing(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	br := bufio.NewReader(cli)
	if err := c.WritePing(); err != nil {
		t.Fatal(err)
	}
	f := serverFrame(t, br)
	if f.Header.OpCode != ws.OpPing || !f.Header.Fin || len(f.Payload) != 0 {
		t.Fatalf("got %v fin=%v %q, want an empty ping", f.Header.OpCode, f.Header.Fin, f.Payload)
	}
	const runs = 100
	allocs := testing.AllocsPerRun(runs, func() {
		if err := c.WritePing(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("WritePing allocates %.1f times, want 0", allocs)
	}
	for range runs + 1 { // drain what AllocsPerRun sent
		serverFrame(t, br)
	}
	if err := c.Close(CloseServiceRestart, "shutdown"); err != nil {
		t.Fatal(err)
	}
	if err := c.WritePing(); !errors.Is(err, ErrClosed) {
		t.Errorf("WritePing after close: %v, want ErrClosed", err)
	}
}

// A pong (or a ping, or an empty message) makes Read return 0 and no
// error, so the driver sees the peer is alive; Ponged hears of each pong;
// the STOMP bytes around them come through unchanged.
func TestReadReportsControlFrames(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	pongs := 0
	c.Ponged = func() { pongs++ }
	write(t, cli,
		clientFrame(ws.OpPong, true, nil),
		clientFrame(ws.OpText, true, []byte("ab")),
		clientFrame(ws.OpPing, true, []byte("p")),
		clientFrame(ws.OpText, true, nil),
		clientFrame(ws.OpPong, true, []byte("x")),
		clientFrame(ws.OpText, true, []byte("c")),
	)
	buf := make([]byte, 16)
	want := []struct {
		n    int
		data string
	}{{0, ""}, {2, "ab"}, {0, ""}, {0, ""}, {0, ""}, {1, "c"}}
	for i, w := range want {
		n, err := c.Read(buf)
		if err != nil || n != w.n || string(buf[:n]) != w.data {
			t.Fatalf("Read %d = %d %q, %v; want %d %q, nil", i, n, buf[:n], err, w.n, w.data)
		}
	}
	if pongs != 2 {
		t.Errorf("Ponged called %d times, want 2", pongs)
	}
	if f := serverFrame(t, bufio.NewReader(cli)); f.Header.OpCode != ws.OpPong || string(f.Payload) != "p" {
		t.Errorf("got %v %q, want the pong answering the ping", f.Header.OpCode, f.Payload)
	}
}
