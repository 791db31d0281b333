package broker

import (
	"regexp"
	"slices"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// replyAddressForm is a rewritten reply-to: 128 random bits in hex.
var replyAddressForm = regexp.MustCompile(`^/reply-queue/([0-9a-f]{32})/replies$`)

// A rewritten reply-to holds 128 random bits of its own per session, not
// the session id CONNECTED shows: a reply sent to the address the old
// scheme would have used reaches nobody, the real address reaches the
// requester.
func TestReplyAddressIsUnguessable(t *testing.T) {
	b := New(Config{})
	server := newClient(t, b)
	server.connect()
	server.mustSend(frames.CmdSubscribe, "", "id:req", "destination:/queue/requests")

	var tokens []string
	var requesters []*client
	for range 2 {
		c := newClient(t, b)
		id := hdr(c.connect(), "session")
		if c.s.replyToken != "" {
			t.Fatal("reply token drawn before the session used a temporary queue")
		}
		c.mustSend(frames.CmdSubscribe, "", "id:r", "destination:/temp-queue/replies")
		c.mustSend(frames.CmdSend, "ping", "destination:/queue/requests", "reply-to:/temp-queue/replies")
		req := server.next()
		m := replyAddressForm.FindStringSubmatch(hdr(req, "reply-to"))
		if m == nil {
			t.Fatalf("reply-to %q, want /reply-queue/<32 hex digits>/replies", hdr(req, "reply-to"))
		}
		tokens = append(tokens, m[1])
		requesters = append(requesters, c)

		// The address the old scheme made from the session id gets nothing
		// to the requester; nor does a guess of the right form.
		server.mustSend(frames.CmdSend, "forged", "destination:/reply-queue/"+id+"/replies")
		server.mustSend(frames.CmdSend, "forged", "destination:/reply-queue/00000000000000000000000000000000/replies")
		if got := c.poll(); len(got) != 0 {
			t.Fatalf("a guessed reply address delivered %v", bodies(got))
		}
		server.mustSend(frames.CmdSend, "pong", "destination:"+hdr(req, "reply-to"))
		if got := bodies(c.poll()); !slices.Equal(got, []string{"pong"}) {
			t.Fatalf("the real reply address delivered %v, want [pong]", got)
		}
	}
	if tokens[0] == tokens[1] {
		t.Fatalf("two sessions share the reply token %s", tokens[0])
	}
	// A session's temporary queues share its token.
	c := requesters[0]
	c.mustSend(frames.CmdSend, "x", "destination:/temp-queue/other")
	if want := "/reply-queue/" + tokens[0] + "/other"; c.s.tempQueues[want] == nil {
		t.Fatalf("temporary queue /temp-queue/other not at %s", want)
	}
}
