package wsadapter

import (
	"bytes"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

// BenchmarkConnRead reads masked 128-byte-body SENDs (one text message
// each, as stomp.js sends them) from a loopback socket: header parsing,
// unmasking in place and UTF-8 validation. One op is one message.
func BenchmarkConnRead(b *testing.B) {
	c, cli := tcpPair(b, 1<<20)
	_ = c.NetConn().SetDeadline(time.Time{})
	_ = cli.SetDeadline(time.Time{})
	const perChunk = 64
	chunk := bytes.Repeat(clientFrame(ws.OpText, true, benchSend), perChunk)
	fed := make(chan error, 1)
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(benchSend)))
	b.ResetTimer()
	go func() {
		for i := 0; i < b.N; i += perChunk {
			if _, err := cli.Write(chunk); err != nil {
				fed <- err
				return
			}
		}
		fed <- nil
	}()
	for range b.N {
		readMessage(b, c, buf, len(benchSend))
	}
	b.StopTimer()
	_ = cli.Close() // the feeder may be a chunk ahead
	<-fed
}

// BenchmarkConnWriteFrames writes batches of MESSAGE frames (128-byte
// bodies) as one WebSocket message each in one vectored write. One op is
// one batch; ns/msg divides by the batch size.
func BenchmarkConnWriteFrames(b *testing.B) {
	for _, n := range []int{1, 16} {
		b.Run("batch-"+strconv.Itoa(n), func(b *testing.B) {
			c, cli := tcpPair(b, 1<<20)
			_ = c.NetConn().SetDeadline(time.Time{})
			_ = cli.SetDeadline(time.Time{})
			done := drain(cli)
			out, ends := batch(benchMessage, n)
			b.ReportAllocs()
			b.SetBytes(int64(len(out)))
			b.ResetTimer()
			for range b.N {
				if err := c.WriteFrames(out, ends); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
			_ = c.NetConn().Close()
			<-done
		})
	}
}

// BenchmarkConnWriteFramesBody writes batches of 16 MESSAGE frames with
// 16 KiB bodies: scanned for UTF-8 per frame (WriteFrames) against the
// caller's answer (WriteFramesText, as the server's writer does: the
// session knows it once per message).
func BenchmarkConnWriteFramesBody(b *testing.B) {
	frame := append([]byte("MESSAGE\ndestination:/topic/t\nsubscription:0\nmessage-id:1-1\n\n"),
		append(bytes.Repeat([]byte("x"), 16<<10), 0)...)
	out, ends := batch(frame, 16)
	text := make([]bool, len(ends))
	for i := range text {
		text[i] = true
	}
	for _, tc := range []struct {
		name string
		text []bool
	}{{"scan", nil}, {"flags", text}} {
		b.Run(tc.name, func(b *testing.B) {
			c, cli := tcpPair(b, 1<<20)
			_ = c.NetConn().SetDeadline(time.Time{})
			_ = cli.SetDeadline(time.Time{})
			done := drain(cli)
			b.ReportAllocs()
			b.SetBytes(int64(len(out)))
			b.ResetTimer()
			for range b.N {
				if err := c.WriteFramesText(out, ends, tc.text); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			_ = c.NetConn().Close()
			<-done
		})
	}
}
