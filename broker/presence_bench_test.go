package broker

import (
	"strconv"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// BenchmarkPresenceJoinLeave measures one member joining and leaving (a
// SUBSCRIBE presence:true and its UNSUBSCRIBE, no grace period) with its
// two events delivered to each of the watchers; the watchers' output is
// taken (encoded) every round, as a writer would.
func BenchmarkPresenceJoinLeave(b *testing.B) {
	for _, watchers := range []int{1, 100} {
		b.Run("watchers="+strconv.Itoa(watchers), func(b *testing.B) {
			br := New(Config{PresenceGrace: -1})
			ws := make([]*client, watchers)
			for i := range ws {
				ws[i] = newClient(b, br)
				ws[i].connect("login:w")
				ws[i].mustSend(frames.CmdSubscribe, "", "id:p", "destination:/presence/room")
			}
			m := newClient(b, br)
			m.connect("login:alice")
			sub := wireFrame(frames.V12, frames.CmdSubscribe, "", "id:s", "destination:/topic/room",
				"presence:true", "presence-info:Alice")
			unsub := wireFrame(frames.V12, frames.CmdUnsubscribe, "", "id:s")
			var out []byte
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if err := m.s.Feed(sub); err != nil {
					b.Fatal(err)
				}
				if err := m.s.Feed(unsub); err != nil {
					b.Fatal(err)
				}
				for _, w := range ws {
					out, _ = w.s.AppendOutput(out[:0])
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*2*watchers), "ns/event-delivery")
		})
	}
}
