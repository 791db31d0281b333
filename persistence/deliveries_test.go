package persistence

import (
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// max_redeliveries does not start over with a restart: a message NACKed 3
// times (max_redeliveries 5) and redelivered once more when the broker
// stops is, after the restart, delivered twice more (delivery-count 5
// and 6: the journaled count, plus one for the delivery in flight, plus
// each new one) and then dead-lettered; not 5 more times.
func TestDeliveryCountSurvivesRestart(t *testing.T) {
	const queue = "/queue/jobs"
	dir := t.TempDir()
	cfg := broker.Config{MaxRedeliveries: 5}
	b, f := startBroker(t, dir, cfg)
	newPeer(t, b).sendPersistent(queue, "job")
	c := newPeer(t, b)
	c.send(frames.CmdSubscribe, "", "id:s", "destination:"+queue, "ack:client-individual")
	nack := func(c *peer, wantCount string) {
		t.Helper()
		fs := c.poll()
		if len(fs) != 1 || fs[0].Command != frames.CmdMessage {
			t.Fatalf("got %d frames, want the MESSAGE (delivery-count %s)", len(fs), wantCount)
		}
		if got := header(fs[0], "delivery-count"); got != wantCount {
			t.Fatalf("delivery-count %q, want %q", got, wantCount)
		}
		c.send(frames.CmdNack, "", "id:"+header(fs[0], "ack"))
	}
	nack(c, "")
	nack(c, "2")
	nack(c, "3")
	// The fourth delivery is in the consumer's outbox when the broker stops.
	mustClose(t, f)

	b, f = startBroker(t, dir, cfg)
	c = newPeer(t, b)
	c.send(frames.CmdSubscribe, "", "id:s", "destination:"+queue, "ack:client-individual")
	nack(c, "5")
	nack(c, "6")
	if fs := c.poll(); len(fs) != 0 {
		t.Fatalf("after 6 deliveries (max_redeliveries 5) the consumer got %d more frames (delivery-count %q)",
			len(fs), header(fs[0], "delivery-count"))
	}
	dlq := newPeer(t, b)
	dlq.send(frames.CmdSubscribe, "", "id:d", "destination:/queue/DLQ.jobs")
	fs := dlq.poll()
	if len(fs) != 1 || string(fs[0].Body) != "job" || header(fs[0], "original-delivery-count") != "6" {
		t.Fatalf("DLQ got %d frames, want the job with original-delivery-count 6", len(fs))
	}
	mustClose(t, f)
}
