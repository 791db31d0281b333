package wsadapter

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// benchSend is a 128-byte-body SEND as stomp.js sends it: one masked text
// message.
var benchSend = []byte("SEND\ndestination:/queue/bench\ncontent-type:text/plain\ncontent-length:128\n\n" +
	strings.Repeat("x", 128) + "\x00")

// benchMessage is a MESSAGE as the broker writes it.
var benchMessage = []byte("MESSAGE\ndestination:/queue/bench\nmessage-id:1-42\nsubscription:0\ncontent-type:text/plain\ncontent-length:128\n\n" +
	strings.Repeat("x", 128) + "\x00")

// readMessage reads one message's payload of n bytes.
func readMessage(tb testing.TB, c *Conn, buf []byte, n int) {
	for got := 0; got < n; {
		k, err := c.Read(buf)
		if err != nil {
			tb.Fatal(err)
		}
		got += k
	}
}

// House style #4: the read path allocates nothing per message in steady
// state. The client's frames are all in the socket before measuring, so
// no other goroutine runs meanwhile.
func TestConnReadAllocs(t *testing.T) {
	const runs = 100
	c, cli := tcpPair(t, 1<<20)
	frame := clientFrame(ws.OpText, true, benchSend)
	write(t, cli, bytes.Repeat(frame, runs+1)) // AllocsPerRun warms up once
	buf := make([]byte, 4096)
	allocs := testing.AllocsPerRun(runs, func() { readMessage(t, c, buf, len(benchSend)) })
	if allocs != 0 {
		t.Errorf("Conn.Read of a masked text message: %v allocs, want 0", allocs)
	}
}

// House style #4: the write path allocates nothing per batch once its
// scratch has grown to the batch size. A drainer with its buffer made
// beforehand keeps the socket writable.
func TestConnWriteFramesAllocs(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	done := drain(cli)
	defer func() {
		_ = c.NetConn().Close()
		<-done
	}()
	out, ends := batch(benchMessage, 3)
	allocs := testing.AllocsPerRun(100, func() {
		if err := c.WriteFrames(out, ends); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("Conn.WriteFrames of 3 frames: %v allocs, want 0", allocs)
	}
}

// drain reads and discards from c until it fails; the returned channel is
// closed when it has stopped.
func drain(c interface{ Read([]byte) (int, error) }) <-chan struct{} {
	done := make(chan struct{})
	buf := make([]byte, 64<<10)
	go func() {
		defer close(done)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return done
}

// batch lays n copies of frame out as the driver hands them to WriteFrames.
func batch(frame []byte, n int) ([]byte, []int) {
	var out []byte
	var ends []int
	for range n {
		out = append(out, frame...)
		ends = append(ends, len(out))
	}
	return out, ends
}
