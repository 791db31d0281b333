package cluster_test

import (
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/stompbox/stompbox/server/cluster/clustertest"
)

// A stompbox node that dies (its NATS connection cut, no chance to give
// anything back) has its unacknowledged queue messages redelivered to a
// consumer on another node after ack_wait.
func TestClusterDeadNodesUnackedRedeliveredElsewhere(t *testing.T) {
	nats := clustertest.StartNATS(t, 3)
	o := nodeOpts{ackWait: 2 * time.Second}
	a := startNode(t, nats.URLs(), "node-a", o)
	b := startNode(t, nats.URLs(), "node-b", o)
	pub := b.dial(t)
	for i := range 5 {
		sendReceipted(t, pub, "/queue/orders", itoa(i))
	}
	ca := a.dial(t)
	subA, err := ca.Subscribe("/queue/orders", stomp.AckClientIndividual, stomp.SubscribeOpt.Header("prefetch-count", "5"))
	if err != nil {
		t.Fatal(err)
	}
	var held []string
	for range 5 {
		held = append(held, string(recv(t, subA, 10*time.Second).Body))
	}
	a.crash() // no Nak reaches NATS: only ack_wait brings them back

	cb := b.dial(t)
	subB, err := cb.Subscribe("/queue/orders", stomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	var again []string
	start := time.Now()
	for range 5 {
		m := recv(t, subB, 15*time.Second)
		if m.Header.Get("redelivered") != "true" {
			t.Fatalf("message %q from the dead node not marked redelivered", m.Body)
		}
		again = append(again, string(m.Body))
		_ = cb.Ack(m)
	}
	t.Logf("redelivered after %v (ack_wait 2s)", time.Since(start).Round(10*time.Millisecond))
	slices.Sort(held)
	slices.Sort(again)
	if !slices.Equal(held, again) {
		t.Fatalf("node B got %v, want the dead node's %v", again, held)
	}
}

// Killing one NATS server of three while a producer streams persistent
// messages loses none that were receipted.
func TestClusterNATSServerKilledMidStreamLosesNoReceipted(t *testing.T) {
	nats := clustertest.StartNATS(t, 3)
	a := startNode(t, nats.URLs(), "node-a", nodeOpts{})
	b := startNode(t, nats.URLs(), "node-b", nodeOpts{})

	var mu sync.Mutex
	receipted := map[string]bool{}
	stop := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		var conn *stomp.Conn
		for i := 0; ; i++ {
			select {
			case <-stop:
				if conn != nil {
					_ = conn.Disconnect()
				}
				return
			default:
			}
			if conn == nil {
				c, err := stomp.Dial("tcp", a.addr, stomp.ConnOpt.HeartBeat(0, 0))
				if err != nil {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				conn = c
			}
			body := itoa(i)
			err := conn.Send("/queue/stream", "text/plain", []byte(body), stomp.SendOpt.Receipt,
				stomp.SendOpt.Header("persistent", "true"))
			if err != nil { // ERROR cluster-unavailable (retryable): reconnect, go on
				_ = conn.MustDisconnect()
				conn = nil
				continue
			}
			mu.Lock()
			receipted[body] = true
			mu.Unlock()
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(receipted) }
	waitFor(t, 20*time.Second, "200 receipted before the kill", func() bool { return count() >= 200 })
	nats.Kill(1)
	waitFor(t, 30*time.Second, "200 more receipted after the kill", func() bool { return count() >= 400 })
	close(stop)
	<-produced

	consumer := b.dial(t)
	// ack:auto: go-stomp's connection goroutine both fills a
	// subscription's channel (16 deep) and writes ACK frames, so a
	// client-ack reader that acks in its own loop can deadlock the client.
	sub, err := consumer.Subscribe("/queue/stream", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	mu.Lock()
	want := len(receipted)
	mu.Unlock()
	deadline := time.After(30 * time.Second)
	for lost := want; lost > 0; {
		select {
		case m := <-sub.C:
			if m.Err != nil {
				t.Fatal(m.Err)
			}
			got[string(m.Body)] = true
		case <-deadline:
			var missing []string
			for body := range receipted {
				if !got[body] {
					missing = append(missing, body)
				}
			}
			t.Fatalf("%d of %d receipted messages lost after a NATS server died: %v", len(missing), want, missing)
		}
		lost = 0
		for body := range receipted {
			if !got[body] {
				lost++
			}
		}
	}
	t.Logf("%d receipted, all consumed (%d messages in all, unreceipted ones included)", want, len(got))
}

// With NATS gone the node is not ready and refuses what needs the
// cluster with a retryable ERROR; once NATS is back it recovers by itself.
func TestClusterNATSDownAndBack(t *testing.T) {
	nats := clustertest.StartNATS(t, 1)
	a := startNode(t, nats.URLs(), "node-a", nodeOpts{})
	consumer := a.dial(t)
	sub, err := consumer.Subscribe("/queue/q", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	nats.Kill(0)
	waitFor(t, 10*time.Second, "/readyz failing", func() bool { return !a.ready() })

	for _, dest := range []string{"/queue/q", "/topic/t"} {
		hs := rawExchange(t, a.addr, "SEND\ndestination:"+dest+"\npersistent:true\nreceipt:r1\n\nx")
		if hs[""] != "ERROR" || hs["error-code"] != "cluster-unavailable" || hs["retryable"] != "true" || hs["receipt-id"] != "r1" {
			t.Fatalf("SEND to %s while NATS is down got %v, want ERROR cluster-unavailable, retryable", dest, hs)
		}
	}

	nats.Restart(0)
	waitFor(t, 20*time.Second, "/readyz passing again", a.ready)
	pub := a.dial(t)
	sendReceipted(t, pub, "/queue/q", "back")
	if m := recv(t, sub, 15*time.Second); string(m.Body) != "back" {
		t.Fatalf("got %q", m.Body)
	}
}
