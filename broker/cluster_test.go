package broker

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

func TestClusterTopicReachesOtherNodesOncePerSubscription(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.node(Config{}), mc.node(Config{})
	pub, local := newClient(t, a.b), newClient(t, a.b)
	pub.connect()
	local.connect()
	local.mustSend(frames.CmdSubscribe, "", "id:l", "destination:/topic/a.b", "receipt:r")
	mustFrame(t, local, "RECEIPT")
	sub := newClient(t, b.b)
	sub.connect()
	sub.mustSend(frames.CmdSubscribe, "", "id:w", "destination:/topic/a.*")
	sub.mustSend(frames.CmdSubscribe, "", "id:e", "destination:/topic/a.b")
	sub.mustSend(frames.CmdSubscribe, "", "id:h", "destination:/topic/#", "receipt:r")
	mustFrame(t, sub, "RECEIPT")

	pub.mustSend(frames.CmdSend, "hello", "destination:/topic/a.b")
	got := sub.poll()
	var ids []string
	for _, f := range got {
		if f.Command != frames.CmdMessage || string(f.Body) != "hello" {
			t.Fatalf("got %s %q", f.Command, f.Body)
		}
		ids = append(ids, hdr(f, "subscription"))
	}
	slices.Sort(ids)
	if !slices.Equal(ids, []string{"e", "h", "w"}) {
		t.Fatalf("node B's subscriptions got %v, want each of e, h, w once", ids)
	}
	if fs := local.poll(); len(fs) != 1 || string(fs[0].Body) != "hello" {
		t.Fatalf("the publisher's node delivered %v, want one MESSAGE", commands(fs))
	}
	// A message from another node is not handed back to the cluster: A's
	// subscriber got it once, not again through B.
	if fs := local.poll(); len(fs) != 0 {
		t.Fatalf("local subscriber got %v more", commands(fs))
	}

	sub.mustSend(frames.CmdUnsubscribe, "", "id:w")
	sub.mustSend(frames.CmdUnsubscribe, "", "id:e", "receipt:u")
	mustFrame(t, sub, "RECEIPT")
	mc.mu.Lock()
	events := slices.Clone(b.events)
	mc.mu.Unlock()
	want := []string{"+a.*", "+a.b", "+#", "-a.*", "-a.b"}
	if !slices.Equal(events, want) {
		t.Fatalf("interest events %v, want %v", events, want)
	}
}

func TestClusterTopicRefusedWhenClusterUnreachable(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	local, pub := newClient(t, a.b), newClient(t, a.b)
	local.connect()
	local.mustSend(frames.CmdSubscribe, "", "id:l", "destination:/topic/news", "receipt:r")
	mustFrame(t, local, "RECEIPT")
	pub.connect()
	mc.topicErr = errors.New("nats: connection reconnecting")
	err := pub.send(frames.CmdSend, "x", "destination:/topic/news", "receipt:s")
	if !isClosed(err) {
		t.Fatalf("SEND while the cluster is unreachable: %v, want the session ended", err)
	}
	f := pub.next()
	if f.Command != frames.CmdError || hdr(f, "error-code") != CodeClusterUnavailable || hdr(f, "retryable") != "true" || hdr(f, "receipt-id") != "s" {
		t.Fatalf("got %s %v", f.Command, headerLines(f))
	}
	if fs := local.poll(); len(fs) != 0 {
		t.Fatalf("a refused topic message reached a local subscriber: %v", commands(fs))
	}
}

// queueNode connects a consumer of /queue/q with the given ack mode and
// prefetch on node n.
func queueConsumer(t *testing.T, n *memNode, ack string, prefetch int) *client {
	t.Helper()
	c := newClient(t, n.b)
	c.connect()
	hs := []string{"id:q", "destination:/queue/q", "ack:" + ack, "receipt:sub"}
	if prefetch > 0 {
		hs = append(hs, "prefetch-count:"+strconv.Itoa(prefetch))
	}
	c.mustSend(frames.CmdSubscribe, "", hs...)
	mustFrame(t, c, "RECEIPT")
	return c
}

func TestClusterQueueSendReceiptOnlyOnceStored(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	mc.holdPubs = true
	pub := newClient(t, a.b)
	pub.connect()
	for i := range 3 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/queue/q", "receipt:s"+strconv.Itoa(i))
	}
	if fs := pub.poll(); len(fs) != 0 {
		t.Fatalf("RECEIPT before the cluster stored the message: %v", commands(fs))
	}
	if got := len(mc.held); got != 3 {
		t.Fatalf("%d SENDs handed to the cluster without waiting, want 3 in flight", got)
	}
	mc.confirm(nil)
	if err := pub.s.Poked(); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, f := range pub.poll() {
		ids = append(ids, hdr(f, "receipt-id"))
	}
	if !slices.Equal(ids, []string{"s0", "s1", "s2"}) {
		t.Fatalf("receipts %v, want s0 s1 s2 in order", ids)
	}
	if q := mc.queue("/" + "/queue/q"); len(q.ready) != 3 {
		t.Fatalf("cluster holds %d messages, want 3", len(q.ready))
	}
	if _, ok := a.b.spaces[DefaultVirtualHost].queues["/queue/q"]; ok {
		t.Fatal("a SEND to a clustered queue created a local queue")
	}
}

func TestClusterQueueSendErrors(t *testing.T) {
	for _, tc := range []struct {
		name, code string
		err        error
	}{
		{"unavailable", CodeClusterUnavailable, fmt.Errorf("%w: timeout", ErrClusterUnavailable)},
		{"full (error policy)", CodeLimitExceeded, fmt.Errorf("%w: maximum messages per subject", ErrClusterFull)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mc := newMemCluster()
			a := mc.node(Config{FullPolicy: FullError})
			mc.pubErr = tc.err
			pub := newClient(t, a.b)
			pub.connect()
			pub.mustSend(frames.CmdSend, "x", "destination:/queue/q", "receipt:s")
			if err := pub.s.Poked(); !isClosed(err) {
				t.Fatalf("Poked: %v, want the session ended", err)
			}
			f := pub.next()
			if f.Command != frames.CmdError || hdr(f, "error-code") != tc.code || hdr(f, "retryable") != "true" || hdr(f, "receipt-id") != "s" {
				t.Fatalf("got %s %v", f.Command, headerLines(f))
			}
		})
	}
}

func TestClusterQueueFullSlowsProducerDown(t *testing.T) {
	mc := newMemCluster()
	clock := newFakeClock()
	a := mc.node(Config{Now: clock.Now})
	mc.pubErr = fmt.Errorf("%w: maximum messages per subject", ErrClusterFull)
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "x", "destination:/queue/q", "receipt:s")
	for range 3 {
		if err := pub.s.Poked(); err != nil {
			t.Fatalf("a full cluster queue ended the producer: %v", err)
		}
		clock.advance(pipeRetryInterval)
	}
	if fs := pub.poll(); len(fs) != 0 {
		t.Fatalf("got %v while the queue is full, want nothing (the SEND waits)", commands(fs))
	}
	mc.pubErr = nil
	clock.advance(pipeRetryInterval)
	if err := pub.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if err := pub.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if f := pub.next(); f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "s" {
		t.Fatalf("got %s %v", f.Command, headerLines(f))
	}
	if q := mc.queue("/" + "/queue/q"); len(q.ready) != 1 {
		t.Fatalf("cluster holds %d, want the one message once", len(q.ready))
	}
}

func TestClusterQueueCompetingConsumersAckNak(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.node(Config{}), mc.node(Config{})
	ca := queueConsumer(t, a, "client-individual", 2)
	cb := queueConsumer(t, b, "client-individual", 2)
	pub := newClient(t, a.b)
	pub.connect()
	for i := range 6 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/queue/q")
	}
	mc.pump()
	ga, gb := ca.poll(), cb.poll()
	if len(ga) != 2 || len(gb) != 2 {
		t.Fatalf("node A got %d, node B %d, want 2 each (prefetch 2)", len(ga), len(gb))
	}
	if q := mc.queue("/" + "/queue/q"); len(q.ready) != 2 {
		t.Fatalf("cluster still holds %d ready, want 2 (nobody has credit)", len(q.ready))
	}
	ca.mustSend(frames.CmdAck, "", "id:"+hdr(ga[0], "ack"))
	ca.mustSend(frames.CmdNack, "", "id:"+hdr(ga[1], "ack"))
	q := mc.queue("/" + "/queue/q")
	if !slices.Equal(q.acked, []string{hdr(ga[0], "message-id")}) || q.naks != 1 {
		t.Fatalf("cluster saw acked %v naks %d, want the ACKed id and one Nak", q.acked, q.naks)
	}
	mc.pump()
	again := ca.poll()
	if len(again) != 2 || hdr(again[0], "message-id") != hdr(ga[1], "message-id") ||
		hdr(again[0], "redelivered") != "true" || hdr(again[0], "delivery-count") != "2" {
		for _, f := range again {
			t.Logf("%v", headerLines(f))
		}
		t.Fatalf("after the NACK node A got %d, want the NACKed message first, redelivered with count 2", len(again))
	}
}

func TestClusterQueueDeadLettersThroughCluster(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{MaxRedeliveries: 1})
	c := queueConsumer(t, a, "client-individual", 1)
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "poison", "destination:/queue/q")
	var id string
	for round := range 2 {
		mc.pump()
		f := c.next()
		id = hdr(f, "message-id")
		c.mustSend(frames.CmdNack, "", "id:"+hdr(f, "ack"))
		_ = round
	}
	q := mc.queue("/" + "/queue/q")
	if !slices.Equal(q.termed, []string{id}) || len(q.ready) != 0 {
		t.Fatalf("original queue: termed %v ready %d, want the message terminated", q.termed, len(q.ready))
	}
	dlq := mc.queue("/" + "/queue/DLQ.q")
	if len(dlq.ready) != 1 {
		t.Fatalf("DLQ holds %d, want 1", len(dlq.ready))
	}
	m := dlq.ready[0].m
	if h := headerOf(m, "original-message-id"); h != id {
		t.Fatalf("DLQ copy original-message-id %q, want %q", h, id)
	}
	if h := headerOf(m, "dlq-reason"); h == "" {
		t.Fatal("DLQ copy has no dlq-reason")
	}
	if got := a.b.Stats().DeadLettered.Load(); got != 1 {
		t.Fatalf("DeadLettered %d, want 1", got)
	}
}

func headerOf(m *Message, key string) string {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestClusterQueueConsumerGoneGivesEverythingBack(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	c := queueConsumer(t, a, "client", 3)
	pub := newClient(t, a.b)
	pub.connect()
	for i := range 5 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/queue/q")
	}
	mc.pump()
	if got := len(c.poll()); got != 3 {
		t.Fatalf("consumer got %d, want 3", got)
	}
	if mc.liveFeeds() != 1 {
		t.Fatalf("%d live feeds, want 1", mc.liveFeeds())
	}
	c.s.Release()
	q := mc.queue("/" + "/queue/q")
	if len(q.ready) != 5 || q.naks != 3 || len(q.acked) != 0 {
		t.Fatalf("after the consumer left: ready %d naks %d acked %d, want 5 ready, 3 given back", len(q.ready), q.naks, len(q.acked))
	}
	if mc.liveFeeds() != 0 {
		t.Fatal("the feed outlived the queue's last consumer")
	}
	if _, ok := a.b.spaces[DefaultVirtualHost].queues["/queue/q"]; ok {
		t.Fatal("the local queue stayed after its last consumer left")
	}
}

func TestClusterQueueAutoAckSettlesWhenWritten(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	c := queueConsumer(t, a, "auto", 0)
	pub := newClient(t, a.b)
	pub.connect()
	for i := range 3 {
		pub.mustSend(frames.CmdSend, strconv.Itoa(i), "destination:/queue/q")
	}
	mc.pump()
	if q := mc.queue("/" + "/queue/q"); len(q.acked) != 0 {
		t.Fatalf("acked %v before the writer took the MESSAGEs", q.acked)
	}
	if got := len(c.poll()); got != 3 {
		t.Fatalf("got %d, want 3", got)
	}
	if q := mc.queue("/" + "/queue/q"); len(q.acked) != 3 {
		t.Fatalf("acked %d once written, want 3", len(q.acked))
	}
}

func TestClusterQueueExpiredIsTerminated(t *testing.T) {
	mc := newMemCluster()
	clock := newFakeClock()
	a := mc.node(Config{Now: clock.Now})
	pub := newClient(t, a.b)
	pub.connect()
	exp := clock.Now().UnixMilli() + 1000
	pub.mustSend(frames.CmdSend, "late", "destination:/queue/q", "expires:"+strconv.FormatInt(exp, 10))
	clock.advance(2 * pipeRetryInterval * 10)
	c := queueConsumer(t, a, "client-individual", 5)
	mc.pump()
	if fs := c.poll(); len(fs) != 0 {
		t.Fatalf("an expired message was delivered: %v", commands(fs))
	}
	if q := mc.queue("/" + "/queue/q"); len(q.termed) != 1 {
		t.Fatalf("termed %v, want the expired message", q.termed)
	}
}

func TestClusterQueueCommitStoresEverySend(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdBegin, "", "transaction:t")
	pub.mustSend(frames.CmdSend, "1", "destination:/queue/q", "transaction:t")
	pub.mustSend(frames.CmdSend, "2", "destination:/queue/q", "transaction:t")
	if q := mc.queue("/" + "/queue/q"); len(q.ready) != 0 {
		t.Fatal("transactional SENDs stored before COMMIT")
	}
	pub.mustSend(frames.CmdCommit, "", "transaction:t", "receipt:c")
	mustFrame(t, pub, "RECEIPT")
	q := mc.queue("/" + "/queue/q")
	if len(q.ready) != 2 || string(q.ready[0].m.Body) != "1" || string(q.ready[1].m.Body) != "2" {
		t.Fatalf("cluster holds %d after COMMIT, want 1 and 2 in order", len(q.ready))
	}
}

func TestClusterReplyReachesTheRequestersNode(t *testing.T) {
	mc := newMemCluster()
	a, b := mc.node(Config{}), mc.node(Config{})
	req := newClient(t, a.b)
	req.connect()
	req.mustSend(frames.CmdSubscribe, "", "id:r", "destination:/temp-queue/answers")
	req.mustSend(frames.CmdSend, "question", "destination:/queue/q", "reply-to:/temp-queue/answers", "receipt:s")
	if err := req.s.Poked(); err != nil { // the cluster stored it: the RECEIPT is due
		t.Fatal(err)
	}
	mustFrame(t, req, "RECEIPT")
	worker := queueConsumer(t, b, "auto", 0)
	mc.pump()
	got := worker.next()
	replyTo := hdr(got, "reply-to")
	if len(replyTo) < len("/reply-queue/") || replyTo[:len("/reply-queue/")] != "/reply-queue/" {
		t.Fatalf("reply-to %q, want a reply-queue address", replyTo)
	}
	worker.mustSend(frames.CmdSend, "answer", "destination:"+replyTo, "receipt:a")
	mustFrame(t, worker, "RECEIPT")
	f := req.next()
	if f.Command != frames.CmdMessage || string(f.Body) != "answer" || hdr(f, "subscription") != "r" {
		t.Fatalf("requester got %s %q %v", f.Command, f.Body, headerLines(f))
	}
	req.s.Release()
	mc.mu.Lock()
	events := slices.Clone(a.events)
	mc.mu.Unlock()
	if !slices.Equal(events, []string{"+reply", "-reply"}) {
		t.Fatalf("reply interest events %v, want on then off", events)
	}
}

func TestClusterDuplicateIsReceiptedNotApplied(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	mc.holdPubs = true
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "x", "destination:/queue/q", "idempotency-key:k", "receipt:s")
	mc.mu.Lock()
	id := mc.held[0].m.DedupeID
	mc.mu.Unlock()
	if len(id) != 64 {
		t.Fatalf("DedupeID %q, want a 64-hex-digit hash of the key", id)
	}
	if other := clusterDedupeID("/", pub.s.principal.Name, "/queue/q", []byte("k")); other != id {
		t.Fatalf("DedupeID %q, want %q (vhost, user, destination, key)", id, other)
	}
	mc.confirm(ErrClusterDuplicate)
	if err := pub.s.Poked(); err != nil {
		t.Fatalf("a duplicate ended the session: %v", err)
	}
	if f := pub.next(); f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "s" {
		t.Fatalf("got %s %v", f.Command, headerLines(f))
	}
	if got := a.b.Stats().Duplicates.Load(); got != 1 {
		t.Fatalf("Duplicates %d, want 1", got)
	}
}

// While a SEND waits for room in a full queue, the SENDs after it wait
// behind it: the cluster stores them in the order sent.
func TestClusterQueueFullKeepsOrder(t *testing.T) {
	mc := newMemCluster()
	clock := newFakeClock()
	a := mc.node(Config{Now: clock.Now})
	full := true
	mc.refuse = func(m *Message) error {
		if full && string(m.Body) == "1" {
			return fmt.Errorf("%w: maximum messages per subject", ErrClusterFull)
		}
		return nil
	}
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdSend, "1", "destination:/queue/q", "receipt:s1")
	if err := pub.s.Poked(); err != nil {
		t.Fatal(err)
	}
	pub.mustSend(frames.CmdSend, "2", "destination:/queue/q", "receipt:s2")
	if q := mc.queue("/" + "/queue/q"); len(q.ready) != 0 {
		t.Fatalf("the SEND behind a refused one was stored first (%d stored)", len(q.ready))
	}
	mc.mu.Lock()
	full = false
	mc.mu.Unlock()
	for range 3 {
		clock.advance(pipeRetryInterval)
		if err := pub.s.Poked(); err != nil {
			t.Fatal(err)
		}
	}
	var ids []string
	for _, f := range pub.poll() {
		ids = append(ids, hdr(f, "receipt-id"))
	}
	q := mc.queue("/" + "/queue/q")
	if !slices.Equal(ids, []string{"s1", "s2"}) || len(q.ready) != 2 || string(q.ready[0].m.Body) != "1" {
		t.Fatalf("receipts %v, stored %d (first %q), want s1 s2 and 1 then 2", ids, len(q.ready), q.ready[0].m.Body)
	}
}

// A COMMIT whose queue SEND the cluster cannot store fails, retryable,
// with nothing of the transaction applied here.
func TestClusterCommitFailsWhenAStoreFails(t *testing.T) {
	mc := newMemCluster()
	a := mc.node(Config{})
	mc.refuse = func(m *Message) error {
		if string(m.Body) == "2" {
			return fmt.Errorf("%w: timeout", ErrClusterUnavailable)
		}
		return nil
	}
	local := newClient(t, a.b)
	local.connect()
	local.mustSend(frames.CmdSubscribe, "", "id:t", "destination:/topic/news", "receipt:r")
	mustFrame(t, local, "RECEIPT")
	pub := newClient(t, a.b)
	pub.connect()
	pub.mustSend(frames.CmdBegin, "", "transaction:t")
	pub.mustSend(frames.CmdSend, "1", "destination:/queue/q", "transaction:t")
	pub.mustSend(frames.CmdSend, "2", "destination:/queue/q", "transaction:t")
	pub.mustSend(frames.CmdSend, "news", "destination:/topic/news", "transaction:t")
	err := pub.send(frames.CmdCommit, "", "transaction:t", "receipt:c")
	if !isClosed(err) {
		t.Fatalf("COMMIT: %v, want the session ended", err)
	}
	f := pub.next()
	if f.Command != frames.CmdError || hdr(f, "error-code") != CodeClusterUnavailable || hdr(f, "retryable") != "true" || hdr(f, "receipt-id") != "c" {
		t.Fatalf("got %s %v", f.Command, headerLines(f))
	}
	// The topic message went to the cluster first (other nodes may have
	// it: documented), but this node applied nothing of the transaction.
	if fs := local.poll(); len(fs) != 0 {
		t.Fatalf("local subscriber got %v", commands(fs))
	}
}
