package server

import (
	"strings"
	"testing"
)

// BenchmarkHistoryResume10kTCP: a topic holds 10,000 messages with
// benchBodySize bodies; each iteration is a new native STOMP connection
// that subscribes with resume-after the topic's first offset minus one
// and reads until the 10,000th replayed MESSAGE has arrived: ns/op is the
// time from connecting to the last message of a full resume.
func BenchmarkHistoryResume10kTCP(b *testing.B) {
	const n = 10_000
	srv := startServer(b, historyConfig(n, 0))
	pub := dialRaw(b, srv.addr)
	pub.connect()
	epoch := epochOf(b, header(subscribeReceipt(pub, "probe", "/topic/hist.bench"), "offset"))
	pub.send(frame("UNSUBSCRIBE", "", "id:probe"))
	body := strings.Repeat("x", benchBodySize)
	for range n / 1000 {
		var w strings.Builder
		for range 1000 {
			w.WriteString(frame("SEND", body, "destination:/topic/hist.bench"))
		}
		pub.send(w.String())
	}
	pub.send(frame("SEND", "", "destination:/topic/other", "receipt:done"))
	rawUntilReceipt(pub, "done")
	subscribe := frame("SUBSCRIBE", "", "id:r", "destination:/topic/hist.bench", "resume-after:"+epoch+"-0")
	b.ResetTimer()
	for b.Loop() {
		c := dialBench(b, overTCP, srv, "")
		if err := c.write(c.wire(subscribe)); err != nil {
			b.Fatal(err)
		}
		for c.count.messages < n {
			if err := c.readSome(); err != nil {
				b.Fatal(err)
			}
			if c.count.other != 0 || c.count.badBody {
				b.Fatalf("got %v (bad body %v) during the resume", c.count.other, c.count.badBody)
			}
		}
		_ = c.conn.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
