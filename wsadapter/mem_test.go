package wsadapter

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"strconv"
	"testing"
	"unsafe"

	"github.com/gobwas/ws"
)

// connSizeMax is what a Conn may weigh (64-bit): an idle connection costs
// its Conn, so the struct must not grow back silently. 208 bytes is a heap
// size class; 480 before control frames stopped having buffers of their
// own. Of it, 72 bytes are the write scratch (headers, iov, bufs).
const connSizeMax = 208

func TestConnSize(t *testing.T) {
	if got := unsafe.Sizeof(Conn{}); got > connSizeMax {
		t.Errorf("unsafe.Sizeof(Conn{}) = %d bytes, want at most %d: keep what only a frame cut across reads needs out of the Conn", got, connSizeMax)
	}
}

// A control frame whole in a chunk is handled in place and allocates
// nothing, even when its header came in an earlier chunk. One whose
// payload is cut across chunks is gathered in a buffer: without Buffers
// it allocates that buffer (one per cut frame, 128 bytes, dropped once the
// frame is handled); with a shared Buffers it borrows one and allocates
// nothing in steady state. The pongs echo every ping whole, so a borrowed
// buffer keeps nothing of the frame before.
func TestFeedCutControlFrameAllocs(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cuts   []int // offsets in the 106-byte ping frame (6 header bytes)
		shared *Buffers
		want   float64
	}{
		{"whole", nil, nil, 0},
		{"header cut", []int{1, 3}, nil, 0},
		{"payload cut, no Buffers", []int{3, 10, 60}, nil, 1},
		{"payload cut, shared Buffers", []int{3, 10, 60}, new(Buffers), 0},
		{"header and payload apart, shared Buffers", []int{6, 7}, new(Buffers), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, cli := tcpPair(t, 1<<20)
			c.Detach()
			c.shared = tc.shared
			const runs = 50
			stomp := func([]byte) error { t.Error("stomp called for a ping"); return nil }
			// Made before measuring (clientFrame allocates); each ping
			// differs from the one before in every byte.
			pings, wires := make([][]byte, runs+1), make([][]byte, runs+1) // AllocsPerRun warms up once
			for i := range pings {
				pings[i] = bytes.Repeat([]byte{byte('A' + i%26)}, 100)
				wires[i] = clientFrame(ws.OpPing, true, pings[i])
			}
			ends := append(tc.cuts[:len(tc.cuts):len(tc.cuts)], len(wires[0]))
			i := 0
			allocs := testing.AllocsPerRun(runs, func() {
				wire := wires[i]
				i++
				start := 0
				for _, end := range ends {
					if err := c.Feed(wire[start:end], stomp); err != nil {
						t.Fatal(err)
					}
					start = end
				}
			})
			if allocs != tc.want {
				t.Errorf("Feed of a ping cut at %v: %v allocs, want %v", tc.cuts, allocs, tc.want)
			}
			br := bufio.NewReader(cli)
			for i, p := range pings {
				f := serverFrame(t, br)
				if f.Header.OpCode != ws.OpPong || !bytes.Equal(f.Payload, p) {
					t.Fatalf("answer %d: %v %q, want a pong %q", i, f.Header.OpCode, f.Payload, p)
				}
			}
		})
	}
}

// The decoder counts a message in 32 bits: a limit over 4 GiB - 1 is taken
// as that, so a frame announcing 4 GiB is refused from its header, as an
// oversized one always is, rather than wrapping around.
func TestFeedLimitOver32Bits(t *testing.T) {
	if strconv.IntSize < 64 {
		t.Skip("an int cannot hold a limit over 4 GiB here")
	}
	c := newConn(nil, nil, math.MaxInt, nil)
	if c.maxMessage != math.MaxUint32 {
		t.Fatalf("maxMessage = %d, want %d", c.maxMessage, uint32(math.MaxUint32))
	}
	header := []byte{0x82, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0, 1, 2, 3, 4} // 1<<32 bytes announced
	err := c.Feed(header, func([]byte) error { t.Error("stomp called"); return nil })
	var pe *ProtocolError
	if !errors.As(err, &pe) || pe.Code != CloseTooBig {
		t.Fatalf("Feed of a 4 GiB frame header: %v, want close 1009", err)
	}
}
