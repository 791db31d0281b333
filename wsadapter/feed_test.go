package wsadapter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"testing"

	"github.com/gobwas/ws"
)

// feedRun is everything one decoding of a wire produced.
type feedRun struct {
	payload []byte   // STOMP bytes handed to stomp, in order
	err     string   // the error Feed returned ("" for none)
	wrote   []string // the frames the Conn wrote back, as "op payload"
	pongs   int      // Ponged calls
}

// runFeed feeds wire (copied: Feed unmasks in place) to a fresh Conn in the
// chunks cuts makes (sorted offsets), as a readiness driver would. The Conn
// writes onto a net.Pipe whose other end is read until the Conn's end is
// closed, so pongs and the close echo are seen as the peer sees them.
func runFeed(t testing.TB, wire []byte, cuts []int, maxMessage int) feedRun {
	t.Helper()
	srv, cli := net.Pipe()
	defer cli.Close()
	wrote := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(cli)
		wrote <- b
	}()
	var r feedRun
	c := newConn(srv, nil, maxMessage, nil)
	c.Ponged = func() { r.pongs++ }
	stomp := func(p []byte) error {
		if len(p) == 0 {
			t.Errorf("stomp called with an empty slice")
		}
		r.payload = append(r.payload, p...)
		return nil
	}
	buf := bytes.Clone(wire)
	start := 0
	for _, end := range append(slices.Clip(cuts), len(buf)) {
		err := c.Feed(buf[start:end], stomp)
		start = end
		if err != nil {
			r.err = errText(err)
			// Sticky: a later chunk gets the same error and no decoding.
			if again := c.Feed(bytes.Clone(buf[start:]), stomp); again != err {
				t.Errorf("Feed after %v returned %v, want the same error", err, again)
			}
			break
		}
	}
	_ = srv.Close()
	r.wrote = frameList(t, <-wrote)
	return r
}

// errText names an error so that runs can be compared: ProtocolErrors by
// close code and reason, others by message.
func errText(err error) string {
	var pe *ProtocolError
	if errors.As(err, &pe) {
		return fmt.Sprintf("close %d: %s", pe.Code, pe.Reason)
	}
	return err.Error()
}

// frameList lists the server frames in b as "op payload" (close: its code).
func frameList(t testing.TB, b []byte) []string {
	t.Helper()
	var out []string
	r := bytes.NewReader(b)
	for r.Len() > 0 {
		f, err := ws.ReadFrame(r)
		if err != nil {
			t.Fatalf("the Conn wrote a broken frame: %v", err)
		}
		if f.Header.Masked {
			t.Errorf("server frame %v is masked", f.Header.OpCode)
		}
		switch f.Header.OpCode {
		case ws.OpPong:
			out = append(out, "pong "+string(f.Payload))
		case ws.OpClose:
			out = append(out, fmt.Sprintf("close %d", binary.BigEndian.Uint16(f.Payload)))
		default:
			out = append(out, fmt.Sprintf("op%d %q", f.Header.OpCode, f.Payload))
		}
	}
	return out
}

// frame64 builds a masked client frame whose length takes the 64-bit
// form whatever its size: the longest header (14 bytes) to cut into.
func frame64(op ws.OpCode, fin bool, payload []byte) []byte {
	mask := [4]byte{0xa1, 0xb2, 0xc3, 0xd4}
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	b := binary.BigEndian.AppendUint64([]byte{b0, 0x80 | 127}, uint64(len(payload)))
	b = append(append(b, mask[:]...), payload...)
	ws.Cipher(b[14:], mask, 0)
	return b
}

// cutsOf returns, for a wire of n bytes, the chunkings every case is fed
// in: whole, split at every single position, byte by byte, and random
// chunkings from a fixed seed.
func cutsOf(n int) map[string][]int {
	out := map[string][]int{"whole": nil}
	var each []int
	for i := 1; i < n; i++ {
		out[fmt.Sprintf("split at %d", i)] = []int{i}
		each = append(each, i)
	}
	out["byte by byte"] = each
	rng := rand.New(rand.NewPCG(15, 6455))
	for k := range 30 {
		var cuts []int
		for at := 1 + rng.IntN(17); at < n; at += 1 + rng.IntN(17) {
			cuts = append(cuts, at)
		}
		out[fmt.Sprintf("random %d %v", k, cuts)] = cuts
	}
	return out
}

// feedCases are wires with what decoding them must give, however cut.
var feedCases = []struct {
	name       string
	maxMessage int
	wire       [][]byte
	payload    string
	err        string // "" none, "EOF", or "close <code>"
	wrote      []string
	pongs      int
}{
	{
		name: "fragments with control frames between them, then close",
		wire: [][]byte{
			clientFrame(ws.OpText, false, []byte("SEND\ndesti")),
			clientFrame(ws.OpPing, true, []byte("ping-1")),
			clientFrame(ws.OpContinuation, false, []byte("nation:/queue/a\n\n")),
			clientFrame(ws.OpPong, true, []byte("unsolicited")),
			clientFrame(ws.OpPing, true, nil),
			clientFrame(ws.OpContinuation, false, nil),
			clientFrame(ws.OpContinuation, true, []byte("body\x00")),
			clientFrame(ws.OpBinary, true, []byte("\n\xff\x00")),
			clientFrame(ws.OpClose, true, closePayload(4000, "bye")),
			clientFrame(ws.OpText, true, []byte("after the close")),
		},
		payload: "SEND\ndestination:/queue/a\n\nbody\x00\n\xff\x00",
		err:     "EOF",
		wrote:   []string{"pong ping-1", "pong ", "close 4000"},
		pongs:   1,
	},
	{
		name: "code points split across fragments, 16- and 64-bit lengths",
		wire: [][]byte{
			clientFrame(ws.OpText, false, []byte("a\xe2\x82")),
			clientFrame(ws.OpContinuation, false, []byte("\xac\xf0\x9f")),
			frame64(ws.OpContinuation, true, []byte("\x98\x80z")),
			clientFrame(ws.OpBinary, true, bytes.Repeat([]byte{0xff, 0}, 100)),
			frame64(ws.OpPing, true, []byte("p")),
		},
		payload: "a€😀z" + string(bytes.Repeat([]byte{0xff, 0}, 100)),
		wrote:   []string{"pong p"},
	},
	{
		name:    "close without a payload is echoed with 1000",
		wire:    [][]byte{clientFrame(ws.OpText, true, []byte("x")), clientFrame(ws.OpClose, true, nil)},
		payload: "x", err: "EOF", wrote: []string{"close 1000"},
	},
	{
		name:       "message over the limit refused from its header",
		maxMessage: 64,
		wire: [][]byte{
			clientFrame(ws.OpText, true, []byte("ok")),
			clientFrame(ws.OpText, true, bytes.Repeat([]byte("a"), 65)),
		},
		payload: "ok", err: "close 1009",
	},
	{
		name:       "fragments adding up past the limit",
		maxMessage: 64,
		wire: [][]byte{
			clientFrame(ws.OpBinary, false, bytes.Repeat([]byte("a"), 40)),
			clientFrame(ws.OpContinuation, true, bytes.Repeat([]byte("b"), 25)),
		},
		payload: string(bytes.Repeat([]byte("a"), 40)), err: "close 1009",
	},
	{
		name:    "invalid UTF-8 after a valid prefix",
		wire:    [][]byte{clientFrame(ws.OpText, true, []byte("ab\xe2\x82A-never"))},
		payload: "ab\xe2\x82", err: "close 1007",
	},
	{
		name: "text ends inside a code point (empty last fragment)",
		wire: [][]byte{
			clientFrame(ws.OpText, false, []byte("a\xe2")), clientFrame(ws.OpContinuation, true, nil),
		},
		payload: "a\xe2", err: "close 1007",
	},
	{
		name:    "unmasked frame",
		wire:    [][]byte{clientFrame(ws.OpText, true, []byte("x")), unmaskedFrame(ws.OpText, []byte("SEND\n"))},
		payload: "x", err: "close 1002",
	},
	{
		name: "reserved bits", wire: [][]byte{clientFrameRsv(ws.OpBinary, true, 2, []byte("x"))},
		err: "close 1002",
	},
	{
		name: "reserved data opcode", wire: [][]byte{clientFrame(ws.OpCode(0x3), true, []byte("x"))},
		err: "close 1002",
	},
	{
		name: "reserved control opcode", wire: [][]byte{clientFrame(ws.OpCode(0xb), true, []byte("x"))},
		err: "close 1002",
	},
	{
		name: "continuation without a message", wire: [][]byte{clientFrame(ws.OpContinuation, true, []byte("x"))},
		err: "close 1002",
	},
	{
		name: "ping over 125 bytes", wire: [][]byte{clientFrame(ws.OpPing, true, bytes.Repeat([]byte("p"), 126))},
		err: "close 1002",
	},
	{
		name: "close with a one-byte payload", wire: [][]byte{clientFrame(ws.OpClose, true, []byte{3})},
		err: "close 1002",
	},
	{
		name: "close code 1005", wire: [][]byte{clientFrame(ws.OpClose, true, closePayload(1005, ""))},
		err: "close 1002",
	},
	{
		name: "close reason not UTF-8", wire: [][]byte{clientFrame(ws.OpClose, true, closePayload(1000, "\xff"))},
		err: "close 1002",
	},
}

// However a wire is cut into chunks, Feed hands on the same payload bytes,
// writes the same frames back and ends with the same error as when it gets
// the wire in one piece, and that is what the wire calls for.
func TestFeedAnyChunking(t *testing.T) {
	for _, tc := range feedCases {
		t.Run(tc.name, func(t *testing.T) {
			maxMessage := tc.maxMessage
			if maxMessage == 0 {
				maxMessage = 1 << 20
			}
			wire := bytes.Join(tc.wire, nil)
			whole := runFeed(t, wire, nil, maxMessage)
			if string(whole.payload) != tc.payload {
				t.Errorf("payload %q, want %q", whole.payload, tc.payload)
			}
			if code := codeOf(whole.err); code != tc.err {
				t.Errorf("error %q, want %q", whole.err, tc.err)
			}
			if !slices.Equal(whole.wrote, tc.wrote) || whole.pongs != tc.pongs {
				t.Errorf("wrote %q and heard %d pongs, want %q and %d", whole.wrote, whole.pongs, tc.wrote, tc.pongs)
			}
			for name, cuts := range cutsOf(len(wire)) {
				if got := runFeed(t, wire, cuts, maxMessage); !sameRun(got, whole) {
					t.Fatalf("%s: %+v, want %+v as in one piece", name, got, whole)
				}
			}
		})
	}
}

// codeOf shortens errText to what feedCases state: "close <code>" or the
// message of another error.
func codeOf(err string) string {
	var code int
	if _, scanErr := fmt.Sscanf(err, "close %d:", &code); scanErr == nil {
		return fmt.Sprintf("close %d", code)
	}
	return err
}

func sameRun(a, b feedRun) bool {
	return bytes.Equal(a.payload, b.payload) && a.err == b.err && slices.Equal(a.wrote, b.wrote) && a.pongs == b.pongs
}

// The size limit is applied from the header alone: the Feed that completes
// the header of an oversized message fails, though no payload byte came.
func TestFeedRefusesTooBigFromTheHeader(t *testing.T) {
	header := []byte{0x82, 0x80 | 126, 0x04, 0x01, 1, 2, 3, 4} // 1025 bytes announced
	c := newConn(nil, nil, 1024, nil)
	stomp := func([]byte) error { t.Error("stomp called"); return nil }
	for i := range header {
		err := c.Feed(header[i:i+1], stomp)
		var pe *ProtocolError
		switch {
		case i < len(header)-1 && err != nil:
			t.Fatalf("header byte %d: %v before the header was whole", i, err)
		case i == len(header)-1 && (!errors.As(err, &pe) || pe.Code != CloseTooBig):
			t.Fatalf("last header byte: %v, want close 1009", err)
		}
	}
}

// An error from stomp comes back as is, at once: the rest of the chunk is
// not decoded (the ping after the data is not answered), and it sticks.
func TestFeedStompErrorStops(t *testing.T) {
	boom := errors.New("session refused the bytes")
	wire := bytes.Join([][]byte{
		clientFrame(ws.OpText, true, []byte("SEND")),
		clientFrame(ws.OpPing, true, []byte("unanswered")),
		clientFrame(ws.OpText, true, []byte("more")),
	}, nil)
	c := newConn(nil, nil, 1<<20, nil) // no socket: answering the ping would panic
	calls := 0
	stomp := func(p []byte) error {
		calls++
		if string(p) != "SEND" {
			t.Errorf("stomp got %q, want SEND", p)
		}
		return boom
	}
	if err := c.Feed(wire, stomp); err != boom {
		t.Fatalf("Feed: %v, want the stomp error as is", err)
	}
	if err := c.Feed(clientFrame(ws.OpText, true, []byte("x")), stomp); err != boom {
		t.Fatalf("Feed after the error: %v, want it again", err)
	}
	if calls != 1 {
		t.Errorf("stomp called %d times, want 1", calls)
	}
}

// FuzzFeedChunking: any bytes, cut by any pattern (each byte of split is
// the next chunk's length, 0 meaning 1, repeated until the end), decode to
// the same payload, writes and error as the whole wire, and never panic.
func FuzzFeedChunking(f *testing.F) {
	for _, tc := range feedCases {
		f.Add(bytes.Join(tc.wire, nil), []byte{1})
		f.Add(bytes.Join(tc.wire, nil), []byte{3, 7, 1})
	}
	f.Add([]byte{0x82, 0x80 | 127, 0x80, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4}, []byte{5})
	f.Fuzz(func(t *testing.T, wire, split []byte) {
		if len(split) == 0 {
			split = []byte{1}
		}
		var cuts []int
		for at, i := 0, 0; ; i++ {
			at += max(1, int(split[i%len(split)]))
			if at >= len(wire) {
				break
			}
			cuts = append(cuts, at)
		}
		whole := runFeed(t, wire, nil, 256)
		if got := runFeed(t, wire, cuts, 256); !sameRun(got, whole) {
			t.Fatalf("chunks at %v: %+v, want %+v as in one piece", cuts, got, whole)
		}
	})
}
