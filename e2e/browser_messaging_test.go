//go:build e2e

package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

// Messaging scenarios of TestBrowser, on the shared broker: topics, queues,
// acknowledgements, transactions, receipts.

// testTopicFanOut: 5 subscribers of one topic each get all 20 messages of
// a publisher, once, in publish order.
func testTopicFanOut(t *testing.T, page *tab) {
	const clients, messages = 5, 20
	var res struct {
		Got [][]string `json:"got"`
	}
	page.eval(t, fmt.Sprintf(`(async () => {
		const N = %d, M = %d;
		const dest = '/topic/' + e2e.unique('e2e.fanout');
		const subscribers = [], got = [];
		for (let i = 0; i < N; i++) {
			const c = await e2e.connect();
			const bodies = [];
			got.push(bodies);
			await e2e.subscribe(c, dest, (m) => bodies.push(m.headers.destination === dest ? m.body : 'wrong destination ' + m.headers.destination));
			subscribers.push(c);
		}
		const pub = await e2e.connect();
		for (let j = 0; j < M; j++) {
			pub.publish({ destination: dest, body: 'fanout-' + j });
		}
		await e2e.waitFor(M + ' messages at each of ' + N + ' clients', () => got.every((b) => b.length >= M));
		// After DISCONNECT's RECEIPT nothing more can arrive: a duplicate
		// would be in got by now.
		await e2e.close(pub, ...subscribers);
		return { got };
	})()`, clients, messages), &res)

	var want []string
	for j := range messages {
		want = append(want, fmt.Sprintf("fanout-%d", j))
	}
	if len(res.Got) != clients {
		t.Fatalf("%d subscribers reported, want %d", len(res.Got), clients)
	}
	for i, got := range res.Got {
		if !slices.Equal(got, want) {
			t.Errorf("subscriber %d got %v, want %v", i, got, want)
		}
	}
}

// testQueueCompeting: 30 messages to a queue with 3 consumers; together
// they get each message exactly once, each consumer some, each in queue
// order.
func testQueueCompeting(t *testing.T, page *tab) {
	const consumers, messages = 3, 30
	var res struct {
		Got [][]int `json:"got"`
	}
	page.eval(t, fmt.Sprintf(`(async () => {
		const N = %d, M = %d;
		const dest = '/queue/' + e2e.unique('e2e.work');
		const consumers = [], got = [];
		for (let i = 0; i < N; i++) {
			const c = await e2e.connect();
			const seqs = [];
			got.push(seqs);
			await e2e.subscribe(c, dest, (m) => seqs.push(Number(m.body)));
			consumers.push(c);
		}
		const pub = await e2e.connect();
		for (let j = 0; j < M; j++) {
			pub.publish({ destination: dest, body: String(j) });
		}
		await e2e.waitFor(M + ' messages in all', () => got.reduce((n, s) => n + s.length, 0) >= M);
		await e2e.close(pub, ...consumers);
		return { got };
	})()`, consumers, messages), &res)

	if len(res.Got) != consumers {
		t.Fatalf("%d consumers reported, want %d", len(res.Got), consumers)
	}
	seen := make(map[int]int)
	for i, got := range res.Got {
		if len(got) == 0 {
			t.Errorf("consumer %d got nothing; distribution %v", i, res.Got)
		}
		if !slices.IsSorted(got) {
			t.Errorf("consumer %d got %v, out of queue order", i, got)
		}
		for _, n := range got {
			seen[n]++
		}
	}
	for j := range messages {
		if seen[j] != 1 {
			t.Errorf("message %d delivered %d times, want exactly once", j, seen[j])
		}
	}
	if len(seen) != messages {
		t.Errorf("%d distinct messages delivered, want %d: %v", len(seen), messages, res.Got)
	}
	t.Logf("distribution: %v", res.Got)
}

// jsDelivery is a MESSAGE as the ack scenario records it.
type jsDelivery struct {
	Body          string `json:"body"`
	Redelivered   string `json:"redelivered"`
	DeliveryCount string `json:"deliveryCount"`
	Ack           string `json:"ack"`
}

// testAckNack: a client-individual subscriber ACKs a and c, NACKs b (which
// comes back with redelivered:true) and leaves d unacknowledged; after it
// disconnects, the next subscriber gets d, redelivered, then a new message,
// and nothing it had acknowledged.
func testAckNack(t *testing.T, page *tab) {
	var res struct {
		First  []jsDelivery `json:"first"`
		Second []jsDelivery `json:"second"`
	}
	page.eval(t, `(async () => {
		const dest = '/queue/' + e2e.unique('e2e.ack');
		const record = (log, m) => log.push({
			body: m.body,
			redelivered: m.headers.redelivered || '',
			deliveryCount: m.headers['delivery-count'] || '',
			ack: m.headers.ack || '',
		});
		const first = await e2e.connect();
		const log1 = [];
		await e2e.subscribe(first, dest, (m) => {
			record(log1, m);
			if (m.body === 'b' && !m.headers.redelivered) {
				m.nack();
			} else if (m.body !== 'd') {
				m.ack();
			}
		}, { ack: 'client-individual' });
		for (const body of ['a', 'b', 'c', 'd']) {
			first.publish({ destination: dest, body });
		}
		await e2e.waitFor('a, b, c, d and b redelivered', () => log1.length >= 5);
		await e2e.close(first); // d was never acknowledged: back to the queue

		const second = await e2e.connect();
		const log2 = [];
		await e2e.subscribe(second, dest, (m) => {
			record(log2, m);
			m.ack();
		}, { ack: 'client-individual' });
		await e2e.publish(second, { destination: dest, body: 'e' });
		await e2e.waitFor('e at the second subscriber', () => log2.some((m) => m.body === 'e'));
		await e2e.close(second);
		return { first: log1, second: log2 };
	})()`, &res)

	// The first subscriber: a, b, c, d once each as first deliveries, and b
	// once more, redelivered.
	var firsts []string
	var again []jsDelivery
	for _, d := range res.First {
		if d.Ack == "" {
			t.Errorf("first subscriber: MESSAGE %q without an ack header", d.Body)
		}
		if d.Redelivered == "" {
			firsts = append(firsts, d.Body)
		} else {
			again = append(again, d)
		}
	}
	if !slices.Equal(firsts, []string{"a", "b", "c", "d"}) {
		t.Errorf("first subscriber: first deliveries %v, want [a b c d]; all: %+v", firsts, res.First)
	}
	if len(again) != 1 || again[0] != (jsDelivery{Body: "b", Redelivered: "true", DeliveryCount: "2", Ack: again[0].Ack}) {
		t.Errorf("first subscriber: redeliveries %+v, want b once with redelivered:true delivery-count:2", again)
	}
	// The second: d (left unacknowledged at disconnect) redelivered, then e.
	want := []jsDelivery{{Body: "d", Redelivered: "true", DeliveryCount: "2"}, {Body: "e"}}
	if len(res.Second) != len(want) {
		t.Fatalf("second subscriber got %+v, want d redelivered then e", res.Second)
	}
	for i, d := range res.Second {
		w := want[i]
		w.Ack = d.Ack
		if d != w || d.Ack == "" {
			t.Errorf("second subscriber, message %d: %+v, want %+v with an ack header", i, d, w)
		}
	}
}

// testTransactions: SENDs inside a transaction are held until COMMIT, then
// delivered in order; an aborted transaction delivers nothing.
func testTransactions(t *testing.T, page *tab) {
	var res struct {
		BeforeCommit []string `json:"beforeCommit"`
		Got          []string `json:"got"`
	}
	page.eval(t, `(async () => {
		const dest = '/queue/' + e2e.unique('e2e.tx');
		const c = await e2e.connect();
		const got = [];
		await e2e.subscribe(c, dest, (m) => got.push(m.body));

		const tx = c.begin();
		c.publish({ destination: dest, body: 'commit-1', headers: { transaction: tx.id } });
		// The RECEIPT says the broker took this SEND into the transaction.
		// Frames of one connection take effect in order, and a delivery to
		// this same connection would be queued before that RECEIPT.
		await e2e.publish(c, { destination: dest, body: 'commit-2', headers: { transaction: tx.id } });
		const beforeCommit = got.slice();
		tx.commit();
		await e2e.waitFor('the committed messages', () => got.length >= 2);

		const aborted = c.begin();
		c.publish({ destination: dest, body: 'aborted-1', headers: { transaction: aborted.id } });
		await e2e.publish(c, { destination: dest, body: 'aborted-2', headers: { transaction: aborted.id } });
		aborted.abort();
		// Queue order: had the aborted ones been delivered, they would come
		// before this one.
		await e2e.publish(c, { destination: dest, body: 'after-abort' });
		await e2e.waitFor('the message after the abort', () => got.includes('after-abort'));
		await e2e.close(c);
		return { beforeCommit, got };
	})()`, &res)

	if len(res.BeforeCommit) != 0 {
		t.Errorf("delivered before COMMIT: %v", res.BeforeCommit)
	}
	if want := []string{"commit-1", "commit-2", "after-abort"}; !slices.Equal(res.Got, want) {
		t.Errorf("delivered %v, want %v", res.Got, want)
	}
}

// testReceipts: SUBSCRIBE, SEND, UNSUBSCRIBE and DISCONNECT each get the
// RECEIPT they asked for (client.watchForReceipt).
func testReceipts(t *testing.T, page *tab) {
	var res struct {
		Asked      map[string]string `json:"asked"`
		Got        map[string]string `json:"got"`
		Messages   []string          `json:"messages"`
		Disconnect string            `json:"disconnect"`
		Ev         jsEvents          `json:"ev"`
	}
	page.eval(t, `(async () => {
		const dest = '/topic/' + e2e.unique('e2e.receipt');
		const asked = {}, got = {}, messages = [];
		let disconnect = '';
		const c = await e2e.connect({ onDisconnect: (frame) => { disconnect = frame.headers['receipt-id']; } });
		const watch = (what) => {
			const id = e2e.unique('receipt-' + what);
			asked[what] = id;
			return e2e.within('RECEIPT for ' + what,
				new Promise((resolve) => c.watchForReceipt(id, (frame) => { got[what] = frame.headers['receipt-id']; resolve(); })));
		};
		let w = watch('subscribe');
		const sub = c.subscribe(dest, (m) => messages.push(m.body), { receipt: asked.subscribe });
		await w;
		w = watch('send');
		c.publish({ destination: dest, body: 'with a receipt', headers: { receipt: asked.send } });
		await w;
		await e2e.waitFor('the message', () => messages.length > 0);
		w = watch('unsubscribe');
		sub.unsubscribe({ receipt: asked.unsubscribe });
		await w;
		await e2e.close(c);
		return { asked, got, messages, disconnect, ev: c.ev };
	})()`, &res)

	for _, what := range []string{"subscribe", "send", "unsubscribe"} {
		if res.Asked[what] == "" || res.Got[what] != res.Asked[what] {
			t.Errorf("%s: RECEIPT receipt-id %q, want %q", what, res.Got[what], res.Asked[what])
		}
	}
	if !slices.Equal(res.Messages, []string{"with a receipt"}) {
		t.Errorf("messages %v, want [with a receipt]", res.Messages)
	}
	if !strings.HasPrefix(res.Disconnect, "close-") {
		t.Errorf("DISCONNECT: onDisconnect saw receipt-id %q, want stomp.js's close-<n>", res.Disconnect)
	}
	checkDisconnected(t, "DISCONNECT", res.Ev)
}
