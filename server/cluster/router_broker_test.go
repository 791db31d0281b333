package cluster

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

var ackRE = regexp.MustCompile(`\nack:([^\n]+)\n`)

// TestBrokersThroughRouters runs two real brokers, each on its own router
// (two nodes): a queue SEND on node a is receipted once stored, consumed
// and acknowledged on node b; a topic SEND on node a reaches node b's
// wildcard subscriber once.
func TestBrokersThroughRouters(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	ra := newTestRouter(t, natsURL(srv), "a", nil)
	rb := newTestRouter(t, natsURL(srv), "b", nil)
	ba, bb := broker.New(broker.Config{Cluster: ra}), broker.New(broker.Config{Cluster: rb})
	ra.setBroker(ba)
	rb.setBroker(bb)
	consumer := newStompClient(t, bb)
	consumer.send(t, "SUBSCRIBE\nid:1\ndestination:/queue/work\nack:client-individual\n\n\x00")
	consumer.send(t, "SUBSCRIBE\nid:2\ndestination:/topic/news.*\n\n\x00")
	eventually(t, 5*time.Second, "topic subscription", func() bool { return subscribed(rb, "sbtest.t.~2f.news.*") })
	if err := rb.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	producer := newStompClient(t, ba)
	producer.send(t, "SEND\ndestination:/queue/work\npersistent:true\nreceipt:r1\n\njob1\x00")
	producer.send(t, "SEND\ndestination:/topic/news.eu\n\nhello\x00")
	eventually(t, 5*time.Second, "RECEIPT after the PubAck", func() bool {
		return strings.Contains(producer.output(), "RECEIPT\nreceipt-id:r1\n")
	})
	eventually(t, 5*time.Second, "both deliveries on node b", func() bool { return len(consumer.deliveries()) == 2 })
	if got := consumer.deliveries(); got[0] != "1:job1" || got[1] != "2:hello" {
		t.Fatalf("node b got %q", got)
	}
	m := ackRE.FindStringSubmatch(consumer.output())
	if m == nil {
		t.Fatalf("no ack header in %q", consumer.output())
	}
	consumer.send(t, "ACK\nid:"+m[1]+"\n\n\x00")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := ra.js.Stream(ctx, "SBTEST_Q_~2f")
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the acknowledged message leaves the stream", func() bool {
		info, err := st.Info(ctx)
		return err == nil && info.State.Msgs == 0
	})
	time.Sleep(200 * time.Millisecond)
	if got := consumer.deliveries(); len(got) != 2 {
		t.Fatalf("node b got %q", got)
	}
}
