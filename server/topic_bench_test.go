package server

import (
	"strconv"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// BenchmarkTopicUnrelatedWildcardsTCP is one producer and one subscriber
// of /topic/bench over native STOMP (as BenchmarkQueue1to1TCP), while 20
// other connections hold 1,001 wildcard subscriptions each that never
// match /topic/bench (wildcards=20x1001), or none (wildcards=0): what
// other tenants' patterns cost an unrelated topic.
func BenchmarkTopicUnrelatedWildcardsTCP(b *testing.B) {
	for _, conns := range []int{0, 20} {
		b.Run("wildcards="+strconv.Itoa(conns)+"x1001", func(b *testing.B) {
			benchDeliveryAfter(b, overTCP, "/topic/bench", 1, func(srv *testServer, url string) {
				for c := range conns {
					subscribeUnrelatedWildcards(b, srv, url, c, 1001)
				}
			})
		})
	}
}

// subscribeUnrelatedWildcards opens one connection with n wildcard
// subscriptions that do not match /topic/bench, in four shapes (literal
// prefix, leading "*", leading "#", "#" in the middle), and waits for the
// RECEIPT of the last.
func subscribeUnrelatedWildcards(b *testing.B, srv *testServer, url string, conn, n int) {
	b.Helper()
	c := dialBench(b, overTCP, srv, url)
	var wire []byte
	for i := range n {
		tag := strconv.Itoa(conn) + "x" + strconv.Itoa(i)
		var pattern string
		switch i % 4 {
		case 0:
			pattern = "noise." + tag + ".*"
		case 1:
			pattern = "*.noise" + tag
		case 2:
			pattern = "#.noise" + tag
		default:
			pattern = "noise" + tag + ".#.end"
		}
		headers := []string{"id:" + strconv.Itoa(i), "destination:/topic/" + pattern}
		if i == n-1 {
			headers = append(headers, "receipt:noise")
		}
		wire = append(wire, c.wire(frame("SUBSCRIBE", "", headers...))...)
	}
	if err := c.write(wire); err != nil {
		b.Fatal(err)
	}
	if f := c.nextFrame(b); f != frames.CmdReceipt {
		b.Fatalf("got %v, want RECEIPT", f)
	}
}
