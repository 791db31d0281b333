//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// Cluster mode with the real binaries: a nats-server process with
// JetStream and stompbox processes joined to it with -cluster-nats, used by
// stomp.js in headless Chromium and by go-stomp; nodes and NATS killed
// with SIGKILL. server/cluster has the same scenarios in-process.

const (
	clusterTopic = "/topic/cluster.chat"
	// clusterMessages is how many counted messages each direction carries.
	clusterMessages = 10
	// clusterProbeTimeout bounds the wait for a topic subscription made on
	// one node to reach publishers on another (NATS interest propagation,
	// normally milliseconds).
	clusterProbeTimeout = 10 * time.Second
)

// numbered returns prefix0 … prefix<n-1>.
func numbered(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s%d", prefix, i)
	}
	return out
}

// TestClusterBrowserAndGoAcrossNodes: stomp.js on node A and go-stomp on
// node B exchange topic and queue messages in both directions, in order.
func TestClusterBrowserAndGoAcrossNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), browserTestTimeout)
	defer cancel()
	nats := startNATS(t)
	a := startClusterNode(t, nats.url(), "node-a")
	b := startClusterNode(t, nats.url(), "node-b")
	requireDemoBuilt(t, a.httpAddr)

	br := startBrowser(t, ctx)
	defer br.close()
	page := br.openTab(t, "node-a", "http://"+a.httpAddr+"/")
	page.installHarness(t)
	var active bool
	page.eval(t, `(async () => { await window.stompboxChat.client.deactivate(); return window.stompboxChat.client.active; })()`, &active)
	if active {
		t.Fatal("the demo page's chat client is still active after deactivate()")
	}

	// The browser, on A, subscribes to the topic and to a queue.
	const toWeb, fromWeb = "/queue/cluster.toweb", "/queue/cluster.fromweb"
	var ok bool
	page.eval(t, fmt.Sprintf(`(async () => {
		const st = window.cluster = { topic: [], queue: [] };
		st.client = await e2e.connect();
		await e2e.subscribe(st.client, %s, (m) => st.topic.push(m.body));
		await e2e.subscribe(st.client, %s, (m) => st.queue.push(m.body));
		return true;
	})()`, quote(clusterTopic), quote(toWeb)), &ok)

	// go-stomp on B probes the topic until the browser's subscription has
	// reached B through NATS, then publishes the counted messages.
	pubB := dialCluster(t, b.addr)
	deadline := time.Now().Add(clusterProbeTimeout)
	for arrived := false; !arrived; {
		if time.Now().After(deadline) {
			t.Fatalf("no probe published on node B reached the browser on node A within %v", clusterProbeTimeout)
		}
		if err := pubB.Send(clusterTopic, "text/plain", []byte("probe"), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
		page.eval(t, `e2e.waitFor('a probe', () => window.cluster.topic.length > 0, 100).then(() => true, () => false)`, &arrived)
	}
	wantTopic, wantQueue := numbered("topic-from-go-", clusterMessages), numbered("queue-from-go-", clusterMessages)
	for i := range clusterMessages {
		if err := pubB.Send(clusterTopic, "text/plain", []byte(wantTopic[i]), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
		sendQueue(t, pubB, toWeb, wantQueue[i])
	}
	var got struct {
		Topic []string `json:"topic"`
		Queue []string `json:"queue"`
	}
	// Probes still on their way come before the counted messages: one
	// publisher's messages keep their order.
	page.eval(t, fmt.Sprintf(`(async () => {
		const st = window.cluster, counted = () => st.topic.filter((b) => b !== 'probe');
		await e2e.waitFor('%[1]d topic and %[1]d queue messages from node B',
			() => counted().length >= %[1]d && st.queue.length >= %[1]d, 10000);
		await e2e.sleep(200); // a duplicate would arrive by now
		return { topic: counted(), queue: st.queue };
	})()`, clusterMessages), &got)
	if !slices.Equal(got.Topic, wantTopic) {
		t.Errorf("the browser on A got %q on %s, want %q", got.Topic, clusterTopic, wantTopic)
	}
	if !slices.Equal(got.Queue, wantQueue) {
		t.Errorf("the browser on A got %q on %s, want %q", got.Queue, toWeb, wantQueue)
	}

	// The other way: go-stomp on B subscribes, the browser publishes.
	subB := dialCluster(t, b.addr)
	topicB, err := subB.Subscribe(clusterTopic, stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	queueB, err := subB.Subscribe(fromWeb, stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(clusterProbeTimeout)
	for arrived := false; !arrived; {
		if time.Now().After(deadline) {
			t.Fatalf("no probe published by the browser on node A reached node B within %v", clusterProbeTimeout)
		}
		page.eval(t, fmt.Sprintf(`e2e.publish(window.cluster.client, { destination: %s, body: 'probe' }).then(() => true)`, quote(clusterTopic)), &ok)
		select {
		case m := <-topicB.C:
			arrived = m.Err == nil && string(m.Body) == "probe"
		case <-time.After(100 * time.Millisecond):
		}
	}
	wantTopic, wantQueue = numbered("topic-from-web-", clusterMessages), numbered("queue-from-web-", clusterMessages)
	page.eval(t, fmt.Sprintf(`(async () => {
		const c = window.cluster.client, sent = [];
		for (let i = 0; i < %d; i++) {
			sent.push(e2e.publish(c, { destination: %s, body: 'topic-from-web-' + i }));
			sent.push(e2e.publish(c, { destination: %s, body: 'queue-from-web-' + i, headers: { persistent: 'true' } }));
		}
		await Promise.all(sent);
		return true;
	})()`, clusterMessages, quote(clusterTopic), quote(fromWeb)), &ok)
	var gotTopic, gotQueue []string
	for len(gotTopic) < clusterMessages {
		if body := string(recvCluster(t, topicB, clusterRecvTimeout).Body); body != "probe" {
			gotTopic = append(gotTopic, body)
		}
	}
	for range clusterMessages {
		m := recvCluster(t, queueB, clusterRecvTimeout)
		gotQueue = append(gotQueue, string(m.Body))
		if err := subB.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(gotTopic, wantTopic) {
		t.Errorf("go-stomp on B got %q on %s, want %q", gotTopic, clusterTopic, wantTopic)
	}
	if !slices.Equal(gotQueue, wantQueue) {
		t.Errorf("go-stomp on B got %q on %s, want %q", gotQueue, fromWeb, wantQueue)
	}
	page.eval(t, `e2e.close(window.cluster.client).then(() => true)`, &ok)
}

// TestClusterKilledNodeRedelivers: a consumer on node A holds N queue
// messages unacknowledged when A is killed with SIGKILL; a consumer on node
// B gets exactly those N, redelivered, once ack_wait (2 s) has passed.
func TestClusterKilledNodeRedelivers(t *testing.T) {
	const n, queue = 5, "/queue/cluster.orders"
	nats := startNATS(t)
	a := startClusterNode(t, nats.url(), "node-a", "-cluster-ack-wait", "2s")
	b := startClusterNode(t, nats.url(), "node-b", "-cluster-ack-wait", "2s")

	pub := dialCluster(t, b.addr)
	want := numbered("order-", n)
	for _, body := range want {
		sendQueue(t, pub, queue, body)
	}
	ca := dialCluster(t, a.addr)
	subA, err := ca.Subscribe(queue, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", fmt.Sprint(n)))
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for range n {
		m := recvCluster(t, subA, clusterRecvTimeout)
		if m.Header.Get("redelivered") == "true" {
			t.Errorf("first delivery of %q is marked redelivered", m.Body)
		}
		held = append(held, string(m.Body))
	}
	if !slices.Equal(held, want) {
		t.Fatalf("the consumer on A got %q, want %q", held, want)
	}
	a.kill9() // no NAK reaches JetStream: only ack_wait brings them back

	again, took, subB := redeliveredOn(t, b.addr, queue, n, 15*time.Second)
	select {
	case m := <-subB.C:
		t.Errorf("an extra message after the %d redelivered ones: %q %v", n, m.Body, m.Err)
	case <-time.After(500 * time.Millisecond):
	}
	slices.Sort(again)
	if !slices.Equal(again, want) {
		t.Fatalf("the consumer on B got %q, want the killed node's %q", again, want)
	}
	if took > 12*time.Second {
		t.Errorf("redelivery took %v with ack_wait 2s", took)
	}
	t.Logf("redelivered on B %v after the kill (ack_wait 2s)", took.Round(10*time.Millisecond))
}

// TestClusterStoppedNodeGivesBack: a node stopped with SIGTERM while a
// consumer holds queue messages unacknowledged gives them back (Nak) as it
// shuts down, so a consumer on another node gets them at once, not after
// ack_wait (30 s by default).
func TestClusterStoppedNodeGivesBack(t *testing.T) {
	const n, queue = 3, "/queue/cluster.tasks"
	nats := startNATS(t)
	a := startClusterNode(t, nats.url(), "node-a")
	b := startClusterNode(t, nats.url(), "node-b")
	pub := dialCluster(t, b.addr)
	want := numbered("task-", n)
	for _, body := range want {
		sendQueue(t, pub, queue, body)
	}
	ca := dialCluster(t, a.addr)
	subA, err := ca.Subscribe(queue, stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", fmt.Sprint(n)))
	if err != nil {
		t.Fatal(err)
	}
	for range n {
		recvCluster(t, subA, clusterRecvTimeout)
	}
	a.stop()

	// Well under ack_wait: only a Nak brings them back this soon.
	again, took, _ := redeliveredOn(t, b.addr, queue, n, 5*time.Second)
	// JetStream redelivers Nak'ed messages in its own order (docs/cluster.md,
	// "Queue order"), so the set is what counts.
	t.Logf("given back on B in %v, in the order %q", took.Round(time.Millisecond), again)
	slices.Sort(again)
	if !slices.Equal(again, want) {
		t.Fatalf("the consumer on B got %q, want the stopped node's %q", again, want)
	}
}

// TestClusterNATSDownAndBack: with its nats-server killed, a node is not
// ready and refuses a queue SEND with a retryable ERROR; once nats-server
// is back on the same port and store, the node is ready again by itself
// and a message stored before the outage and one sent after are consumed.
func TestClusterNATSDownAndBack(t *testing.T) {
	const queue = "/queue/cluster.jobs"
	nats := startNATS(t)
	a := startClusterNode(t, nats.url(), "node-a")
	pub := dialCluster(t, a.addr)
	sendQueue(t, pub, queue, "before")

	nats.kill9()
	body := a.waitReady(t, http.StatusServiceUnavailable, 10*time.Second)
	if !strings.Contains(body, "cluster") {
		t.Errorf("/readyz with NATS down says %q, which does not name the cluster", body)
	}
	// A topic SEND too: delivering it to this node's subscribers only
	// would split the cluster.
	for _, dest := range []string{queue, clusterTopic} {
		f := rawClusterSend(t, a.addr, dest, "during")
		if f.command != "ERROR" || f.headers["error-code"] != "cluster-unavailable" || f.headers["retryable"] != "true" || f.headers["receipt-id"] != "r1" {
			t.Fatalf("SEND to %s with NATS down got %v, want ERROR error-code:cluster-unavailable retryable:true receipt-id:r1", dest, f)
		}
	}

	down := time.Now()
	nats.start()
	a.waitReady(t, http.StatusOK, 20*time.Second)
	t.Logf("/readyz 200 again %v after nats-server restarted", time.Since(down).Round(10*time.Millisecond))
	pub = dialCluster(t, a.addr) // the first session may have been cut
	sendQueue(t, pub, queue, "after")
	c := dialCluster(t, a.addr)
	sub, err := c.Subscribe(queue, stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 2 {
		m := recvCluster(t, sub, clusterRecvTimeout)
		got = append(got, string(m.Body))
		if err := c.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	if want := []string{"before", "after"}; !slices.Equal(got, want) {
		t.Errorf("consumed %q after the outage, want %q", got, want)
	}
	select {
	case m := <-sub.C:
		t.Errorf("an extra message: %q %v (the refused SEND must not be stored)", m.Body, m.Err)
	case <-time.After(300 * time.Millisecond):
	}
}

// redeliveredOn subscribes to queue on the node at addr and takes n
// messages, each within within and marked redelivered, acknowledging
// them: their bodies in arrival order, how long they took, and the
// subscription (for a check that nothing more comes).
func redeliveredOn(t *testing.T, addr, queue string, n int, within time.Duration) ([]string, time.Duration, *stomp.Subscription) {
	t.Helper()
	c := dialCluster(t, addr)
	sub, err := c.Subscribe(queue, stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var got []string
	for range n {
		m := recvCluster(t, sub, within)
		if m.Header.Get("redelivered") != "true" {
			t.Errorf("%q from the node that held it is not marked redelivered: %v", m.Body, m.Header)
		}
		got = append(got, string(m.Body))
		if err := c.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	return got, time.Since(start), sub
}
