//go:build e2e

package e2e

import (
	"net"
	"testing"
	"time"
)

// The real binary with -presence-grace: a member that drops and is back
// within the grace period makes no event; one that stays away leaves once,
// no sooner than the grace period after it dropped.
func TestPresenceGraceFlag(t *testing.T) {
	const grace = 700 * time.Millisecond
	b := startBroker(t, "-presence-grace", grace.String())
	defer b.stop()
	wc, wr := connectHostile(t, b.addr, "0,0")
	writeHostile(t, wc, "SUBSCRIBE\nid:p\ndestination:/presence/room\nreceipt:r\n\n\x00")
	event := func(timeout time.Duration) hostileFrame {
		t.Helper()
		f, err := readHostileFrame(wc, wr, timeout)
		if err != nil {
			t.Fatalf("no presence event: %v", err)
		}
		return f
	}
	if f := event(hostileWait); f.command != "RECEIPT" {
		t.Fatalf("got %v, want the RECEIPT", f)
	}
	if f := event(hostileWait); f.headers["presence-event"] != "snapshot" || f.body != `{"members":[]}` {
		t.Fatalf("got %v, want the empty snapshot", f)
	}
	var member net.Conn
	join := func() {
		t.Helper()
		c, r := connectHostile(t, b.addr, "0,0")
		writeHostile(t, c, "SUBSCRIBE\nid:s\ndestination:/topic/room\npresence:true\npresence-id:tab\npresence-info:A\nreceipt:j\n\n\x00")
		if f, err := readHostileFrame(c, r, hostileWait); err != nil || f.command != "RECEIPT" {
			t.Fatalf("SUBSCRIBE presence:true: %v, %v", f, err)
		}
		t.Cleanup(func() { _ = c.Close() })
		member = c
	}
	const body = `{"user":"anonymous","id":"tab","info":"A"}`
	join()
	if f := event(hostileWait); f.headers["presence-event"] != "join" || f.body != body {
		t.Fatalf("got %v, want the join", f)
	}

	_ = member.Close() // the network drops
	join()
	if f, err := readHostileFrame(wc, wr, 2*grace); err == nil {
		t.Fatalf("reconnect within the grace period made %v", f)
	}

	_ = member.Close()
	dropped := time.Now()
	f := event(hostileWait)
	if f.headers["presence-event"] != "leave" || f.body != body || f.headers["destination"] != "/presence/room" ||
		f.headers["content-type"] != "application/json" {
		t.Fatalf("got %v, want the leave", f)
	}
	if waited := time.Since(dropped); waited < grace-100*time.Millisecond {
		t.Fatalf("left %v after the drop, before the grace period of %v", waited, grace)
	}
	if f, err := readHostileFrame(wc, wr, 2*grace); err == nil {
		t.Fatalf("after the leave: %v", f)
	}
}
