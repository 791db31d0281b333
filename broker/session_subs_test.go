package broker

import (
	"strconv"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// TestSubTableAcrossIndexThreshold adds subscriptions past subTableLinear
// (the maps are made), looks each up by id and number, removes them in an
// order that goes back under the threshold (the maps go) and checks what
// remains at every step against a plain map.
func TestSubTableAcrossIndexThreshold(t *testing.T) {
	const n = 3 * subTableLinear
	var tab subTable
	want := map[string]*subscription{}
	check := func(step string) {
		t.Helper()
		if tab.size() != len(want) {
			t.Fatalf("%s: size %d, want %d", step, tab.size(), len(want))
		}
		if (tab.idx != nil) != (len(want) > subTableLinear) {
			t.Fatalf("%s: %d subscriptions, index made %v", step, len(want), tab.idx != nil)
		}
		for id, sub := range want {
			if got := tab.get([]byte(id)); got != sub {
				t.Fatalf("%s: get(%q) = %p, want %p", step, id, got, sub)
			}
			if got := tab.getString(id); got != sub {
				t.Fatalf("%s: getString(%q) = %p, want %p", step, id, got, sub)
			}
			if got := tab.byNum(sub.num); got != sub {
				t.Fatalf("%s: byNum(%d) = %p, want %p", step, sub.num, got, sub)
			}
		}
		if tab.get([]byte("absent")) != nil || tab.byNum(n+100) != nil {
			t.Fatalf("%s: found a subscription never added", step)
		}
	}
	subs := make([]*subscription, n)
	for i := range subs {
		subs[i] = &subscription{id: "sub-" + strconv.Itoa(i), num: uint32(i + 1)}
		tab.add(subs[i])
		want[subs[i].id] = subs[i]
		check("add " + subs[i].id)
	}
	for i := 0; i < n; i += 2 { // every other one, then the rest
		tab.remove(subs[i])
		delete(want, subs[i].id)
		check("remove " + subs[i].id)
	}
	tab.remove(subs[0]) // not there any more: nothing changes
	check("remove again")
	for i := 1; i < n; i += 2 {
		tab.remove(subs[i])
		delete(want, subs[i].id)
		check("remove " + subs[i].id)
	}
	if tab.idx != nil {
		t.Fatal("empty table keeps its index")
	}
}

// TestSessionManySubscriptions drives more subscriptions than
// subTableLinear through a session: UNSUBSCRIBE by id and ACK by ack id
// find theirs, and DISCONNECT releases all of them (the loop in
// releaseResources removes while it ranges).
func TestSessionManySubscriptions(t *testing.T) {
	b := New(Config{})
	c := newClient(t, b)
	c.connect()
	const n = 2*subTableLinear + 1
	for i := range n {
		c.mustSend(frames.CmdSubscribe, "", "id:s"+strconv.Itoa(i), "destination:/queue/q"+strconv.Itoa(i), "ack:client-individual")
	}
	c.mustSend(frames.CmdUnsubscribe, "", "id:s3", "receipt:u")
	if f := c.next(); f.Command != frames.CmdReceipt || hdr(f, "receipt-id") != "u" {
		t.Fatalf("UNSUBSCRIBE s3: got %s %q", f.Command, hdr(f, "message"))
	}
	if c.s.subTab.size() != n-1 || c.s.subTab.getString("s3") != nil {
		t.Fatalf("after UNSUBSCRIBE: %d subscriptions, s3 still there: %v", c.s.subTab.size(), c.s.subTab.getString("s3") != nil)
	}
	c.mustSend(frames.CmdSend, "hello", "destination:/queue/q"+strconv.Itoa(n-1))
	msg := c.next()
	if msg.Command != frames.CmdMessage || hdr(msg, "subscription") != "s"+strconv.Itoa(n-1) {
		t.Fatalf("got %s for subscription %q, want MESSAGE for s%d", msg.Command, hdr(msg, "subscription"), n-1)
	}
	c.mustSend(frames.CmdAck, "", "id:"+hdr(msg, "ack"), "receipt:a")
	if f := c.next(); f.Command != frames.CmdReceipt {
		t.Fatalf("ACK: got %s %q, want RECEIPT", f.Command, hdr(f, "message"))
	}
	if err := c.send(frames.CmdDisconnect, "", "receipt:d"); !isClosed(err) {
		t.Fatalf("DISCONNECT: %v", err)
	}
	if c.s.subTab.size() != 0 {
		t.Fatalf("after DISCONNECT: %d subscriptions left", c.s.subTab.size())
	}
}
