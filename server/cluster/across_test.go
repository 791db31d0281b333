package cluster_test

import (
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// threeNodes starts 3 NATS servers and 3 stompbox nodes, each node
// connected to all of NATS.
func threeNodes(t *testing.T, o nodeOpts) (*clustertest.NATS, []*node) {
	t.Helper()
	nats := clustertest.StartNATS(t, 3)
	var nodes []*node
	for i := range 3 {
		nodes = append(nodes, startNode(t, nats.URLs(), "node-"+string(rune('a'+i)), o))
	}
	return nats, nodes
}

func TestClusterTopicsAcrossNodes(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	pub := n[0].dial(t)
	// One connection per subscription: go-stomp's reader blocks on a
	// subscription whose channel is full, so subscriptions read one after
	// the other must not share a connection.
	subs := map[string]*stomp.Subscription{}
	for name, spec := range map[string]struct {
		node *node
		dest string
	}{
		"B chat.*": {n[1], "/topic/chat.*"}, "C chat.#": {n[2], "/topic/chat.#"},
		"C chat.room1": {n[2], "/topic/chat.room1"}, "C #": {n[2], "/topic/#"},
	} {
		s, err := spec.node.dial(t).Subscribe(spec.dest, stomp.AckAuto)
		if err != nil {
			t.Fatal(err)
		}
		subs[name] = s
	}
	b := n[1].dial(t)
	other, err := b.Subscribe("/topic/news", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	probeTopic(t, pub, "/topic/chat.room1", slices.Collect(maps.Values(subs))...)

	const count = 50
	for i := range count {
		if err := pub.Send("/topic/chat.room1", "text/plain", []byte(itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	for name, s := range subs {
		for i := range count {
			m := recv(t, s, 10*time.Second)
			if string(m.Body) != itoa(i) {
				t.Fatalf("%s: message %d is %q: lost, duplicated or out of order", name, i, m.Body)
			}
		}
		none(t, s, 0)
	}
	none(t, other, 200*time.Millisecond)
}

func TestClusterQueueCompetingConsumersAcrossNodes(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	var mu sync.Mutex
	got := map[string]int{} // body -> times
	per := make([]int, 3)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 3 {
		conn := n[i].dial(t)
		sub, err := conn.Subscribe("/queue/jobs", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "5"))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case m, ok := <-sub.C:
					if !ok || m.Err != nil {
						return
					}
					mu.Lock()
					got[string(m.Body)]++
					per[i]++
					mu.Unlock()
					_ = conn.Ack(m)
				case <-stop:
					return
				}
			}
		}()
	}
	pub := n[0].dial(t)
	// Jobs go out in rounds of 100 until every node has consumed some (a
	// node's feed may take a moment to find the queue's shared consumer on
	// a loaded machine), at most 1,000: competing means every node takes
	// part, and each job is consumed exactly once.
	count := 0
	allTookPart := func() bool {
		mu.Lock()
		defer mu.Unlock()
		return per[0] > 0 && per[1] > 0 && per[2] > 0
	}
	for count < 1000 && (count == 0 || !allTookPart()) {
		for range 100 {
			sendReceipted(t, pub, "/queue/jobs", itoa(count))
			count++
		}
		waitFor(t, 20*time.Second, "every job consumed", func() bool {
			mu.Lock()
			defer mu.Unlock()
			return len(got) == count
		})
	}
	time.Sleep(300 * time.Millisecond) // a duplicate would show up by now
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	for body, times := range got {
		if times != 1 {
			t.Fatalf("job %s consumed %d times", body, times)
		}
	}
	for i, c := range per {
		if c == 0 {
			t.Fatalf("node %d consumed nothing: %v (consumers do not compete across nodes)", i, per)
		}
	}
	t.Logf("consumed per node: %v", per)
}

func TestClusterNackRedeliversElsewhereThenDeadLetters(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{broker: broker.Config{MaxRedeliveries: 1}})
	a := n[0].dial(t)
	subA, err := a.Subscribe("/queue/poison", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "1"))
	if err != nil {
		t.Fatal(err)
	}
	dlqConn := n[2].dial(t)
	dlq, err := dlqConn.Subscribe("/queue/DLQ.poison", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	pub := n[1].dial(t)
	sendReceipted(t, pub, "/queue/poison", "bad")
	m := recv(t, subA, 10*time.Second)
	if m.Header.Get("redelivered") == "true" {
		t.Fatalf("first delivery marked redelivered: %v", m.Header)
	}
	if err := a.Nack(m); err != nil {
		t.Fatal(err)
	}
	m = recv(t, subA, 10*time.Second)
	if m.Header.Get("redelivered") != "true" || m.Header.Get("delivery-count") != "2" {
		t.Fatalf("second delivery headers redelivered=%q delivery-count=%q, want true and 2",
			m.Header.Get("redelivered"), m.Header.Get("delivery-count"))
	}
	id := m.Header.Get("message-id")
	if err := a.Nack(m); err != nil {
		t.Fatal(err)
	}
	d := recv(t, dlq, 10*time.Second)
	if string(d.Body) != "bad" || d.Header.Get("original-message-id") != id || d.Header.Get("dlq-reason") == "" {
		t.Fatalf("DLQ got %q original-message-id=%q dlq-reason=%q", d.Body, d.Header.Get("original-message-id"), d.Header.Get("dlq-reason"))
	}
	none(t, subA, 500*time.Millisecond)
}

func TestClusterReplyToRequesterOnAnotherNode(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	req := n[0].dial(t)
	answers, err := req.Subscribe("/temp-queue/answers", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	worker := n[2].dial(t)
	work, err := worker.Subscribe("/queue/rpc", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	sendReceipted(t, req, "/queue/rpc", "question", stomp.SendOpt.Header("reply-to", "/temp-queue/answers"))
	q := recv(t, work, 10*time.Second)
	replyTo := q.Header.Get("reply-to")
	if err := worker.Send(replyTo, "text/plain", []byte("answer"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	a := recv(t, answers, 10*time.Second)
	if string(a.Body) != "answer" {
		t.Fatalf("requester got %q", a.Body)
	}
}

// An idempotency-key repeated on another node within the window is
// receipted there and stored once: the stream recognizes its id.
func TestClusterIdempotencyKeyAcrossNodes(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	for i, nd := range n[:2] {
		c := nd.dial(t)
		sendReceipted(t, c, "/queue/payments", "charge-"+itoa(i), stomp.SendOpt.Header("idempotency-key", "order-17"))
	}
	c := n[1].dial(t)
	sendReceipted(t, c, "/queue/payments", "other", stomp.SendOpt.Header("idempotency-key", "order-18"))
	consumer := n[2].dial(t)
	sub, err := consumer.Subscribe("/queue/payments", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub, 10*time.Second); string(m.Body) != "charge-0" {
		t.Fatalf("first message %q, want the first SEND of order-17", m.Body)
	}
	if m := recv(t, sub, 10*time.Second); string(m.Body) != "other" {
		t.Fatalf("second message %q, want order-18's (the repeat of order-17 stored once)", m.Body)
	}
	none(t, sub, 500*time.Millisecond)
	if got := n[1].srv.Broker().Stats().Duplicates.Load(); got != 1 {
		t.Fatalf("node B counted %d duplicates, want 1", got)
	}
}
