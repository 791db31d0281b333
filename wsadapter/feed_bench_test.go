package wsadapter

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gobwas/ws"
)

// feedChunk is what one readable socket may hold: 16 masked text messages
// of 128 bytes each, as stomp.js sends small SENDs.
func feedChunk() []byte {
	body := []byte("SEND\ndestination:/queue/bench\n\n" + strings.Repeat("x", 128-32) + "\x00")
	return bytes.Repeat(clientFrame(ws.OpText, true, body[:128]), 16)
}

// House style #4: Feed allocates nothing in steady state, whether a chunk
// holds many frames or a single byte of one, pings answered included.
func TestFeedAllocs(t *testing.T) {
	c, cli := tcpPair(t, 1<<20)
	if ahead := c.Detach(); ahead != nil {
		t.Fatalf("%d bytes read ahead on a fresh socket", len(ahead))
	}
	done := drain(cli) // takes the pongs
	defer func() {
		_ = c.NetConn().Close()
		<-done
	}()
	wire := append(feedChunk(), clientFrame(ws.OpPing, true, []byte("p"))...)
	buf := make([]byte, len(wire))
	got := 0
	stomp := func(p []byte) error { got += len(p); return nil }
	for _, tc := range []struct {
		name string
		step int
	}{{"whole chunk", len(wire)}, {"byte by byte", 1}} {
		got = 0
		allocs := testing.AllocsPerRun(50, func() {
			copy(buf, wire) // Feed unmasked the last copy in place
			for at := 0; at < len(buf); at += tc.step {
				if err := c.Feed(buf[at:min(at+tc.step, len(buf))], stomp); err != nil {
					t.Fatal(err)
				}
			}
		})
		if allocs != 0 {
			t.Errorf("Feed, %s: %v allocs, want 0", tc.name, allocs)
		}
		if want := 51 * 16 * 128; got != want { // AllocsPerRun warms up once
			t.Errorf("Feed, %s: %d payload bytes, want %d", tc.name, got, want)
		}
	}
}

// BenchmarkFeed decodes a chunk of 16 masked 128-byte text messages, in
// one Feed and byte by byte (the worst cut a socket can make). One op is
// one chunk, including copying the masked chunk back into place.
func BenchmarkFeed(b *testing.B) {
	wire := feedChunk()
	for _, tc := range []struct {
		name string
		step int
	}{{"16x128B", len(wire)}, {"16x128B-bytewise", 1}} {
		b.Run(tc.name, func(b *testing.B) {
			c := newConn(nil, nil, 1<<20, nil)
			buf := make([]byte, len(wire))
			stomp := func([]byte) error { return nil }
			b.ReportAllocs()
			b.SetBytes(int64(len(wire)))
			b.ResetTimer()
			for range b.N {
				copy(buf, wire)
				for at := 0; at < len(buf); at += tc.step {
					if err := c.Feed(buf[at:min(at+tc.step, len(buf))], stomp); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*16), "ns/msg")
		})
	}
}
