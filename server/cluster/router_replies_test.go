package cluster

import (
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

func TestReplySubjects(t *testing.T) {
	for _, c := range []struct {
		key, want string
		ok        bool
	}{
		{"/reply-queue/ab12/r", "p.r.~2f.ab12.r", true},
		{"/reply-queue/ab12/a.b/c", "p.r.~2f.ab12.~612e622f63", true},
		{"/reply-queue/ab12/", "p.r.~2f.ab12.~", true},
		{"/reply-queue/ab12", "", false},
		{"/queue/x", "", false},
	} {
		got, ok := replySubject("p", "/", c.key)
		if got != c.want || ok != c.ok {
			t.Errorf("replySubject(%q) = %q, %v", c.key, got, ok)
		}
	}
}

var replyToRE = regexp.MustCompile(`reply-to:/reply-queue/([0-9a-f]+)/r\n`)

func TestReplyAcrossNodes(t *testing.T) {
	noLeaks(t)
	srv := startNATS(t, -1, t.TempDir())
	ra := newTestRouter(t, natsURL(srv), "a", nil)
	rb := newTestRouter(t, natsURL(srv), "b", nil)
	ba, bb := broker.New(broker.Config{Cluster: ra}), broker.New(broker.Config{Cluster: rb})
	ra.setBroker(ba)
	rb.setBroker(bb)
	requester := newStompClient(t, bb)
	requester.send(t, "SUBSCRIBE\nid:1\ndestination:/temp-queue/r\n\n\x00")
	requester.send(t, "SUBSCRIBE\nid:2\ndestination:/topic/req\n\n\x00")
	requester.send(t, "SEND\ndestination:/topic/req\nreply-to:/temp-queue/r\n\nping\x00")
	var token string
	eventually(t, 5*time.Second, "the request with its reply-to", func() bool {
		if m := replyToRE.FindStringSubmatch(requester.output()); m != nil {
			token = m[1]
		}
		return token != ""
	})
	eventually(t, 5*time.Second, "reply subscription", func() bool {
		return subscribed(rb, "sbtest.r.~2f."+token+".*")
	})
	if err := rb.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	responder := newStompClient(t, ba)
	responder.send(t, "SEND\ndestination:/reply-queue/"+token+"/r\n\npong\x00")
	eventually(t, 5*time.Second, "the reply on node b", func() bool {
		return strings.Contains(requester.output(), "\n\npong\x00")
	})
	if got := requester.deliveries(); len(got) != 2 || got[0] != "1:pong" || got[1] != "2:ping" {
		t.Fatalf("requester got %q", got)
	}
	// The requester leaves: its node stops listening for its replies.
	if err := requester.s.Feed([]byte("DISCONNECT\nreceipt:9\n\n\x00")); err != nil && err != broker.ErrSessionClosed {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "reply unsubscribed", func() bool {
		return !subscribed(rb, "sbtest.r.~2f."+token+".*")
	})
}
