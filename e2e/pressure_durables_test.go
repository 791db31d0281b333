//go:build e2e

package e2e

import (
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
)

// Durable subscriptions owned by their user, per-user quotas and
// unguessable reply addresses (docs/security.md), against the real binary
// with a users file of two users whom the ACL allows the same
// destinations.

// pressureUsers writes the users file and ACL of these tests and returns
// the broker flags for them, and the users' passwords.
func pressureUsers(t *testing.T, dir string) ([]string, map[string]string) {
	t.Helper()
	users := filepath.Join(dir, "users")
	pw := map[string]string{"alice": "alice-durable-e2e", "bob": "bob-durable-e2e"}
	writeUsers(t, users, "alice", "", pw["alice"])
	writeUsers(t, users, "bob", "", pw["bob"])
	acl := writeFile(t, dir, "acl.yaml", []byte(`rules:
  - users: [alice, bob]
    publish: ["/topic/orders.#", "/queue/#"]
    subscribe: ["/topic/orders.#", "/queue/#"]
`))
	return []string{"-auth-users-file", users, "-auth-acl-file", acl, "-auth-failure-delay", "0s"}, pw
}

func durableFrame(id, dest, name string) string {
	return "SUBSCRIBE\nid:" + id + "\ndestination:" + dest + "\ndurable-subscription-name:" + name +
		"\nreceipt:sub-" + id + "\n\n\x00"
}

// TestPressureDurableOwnership: bob, connecting with alice's client-id and
// subscribing with her durable subscription's name, gets a durable
// subscription of his own: he reads none of her backlog, and re-pointing
// or removing "it" changes only his. Alice then gets every message
// published while she was away.
func TestPressureDurableOwnership(t *testing.T) {
	t.Parallel()
	flags, pw := pressureUsers(t, t.TempDir())
	b := startAuthBroker(t, flags...)
	for _, tr := range authTransports {
		t.Run(tr, func(t *testing.T) {
			topic := "/topic/orders." + tr
			as := func(user string, headers ...string) *authConn {
				return authSession(t, b, tr, append([]string{"login:" + user, "passcode:" + pw[user]}, headers...)...)
			}
			alice := as("alice", "client-id:shared-app")
			alice.do(durableFrame("feed", topic, "feed"), "sub-feed")
			alice.do("DISCONNECT\nreceipt:bye\n\n\x00", "bye")

			pub := as("alice")
			want := []string{"o1", "o2", "o3"}
			for _, body := range want {
				pub.do(sendFrame(topic, body, "s-"+body), "s-"+body)
			}

			bob := as("bob", "client-id:shared-app")
			bob.do(durableFrame("feed", topic, "feed"), "sub-feed")
			bob.expectQuiet("bob's SUBSCRIBE with alice's client-id and name")
			bob.do("UNSUBSCRIBE\nid:feed\nreceipt:u1\n\n\x00", "u1")
			bob.do(durableFrame("moved", topic+".elsewhere", "feed"), "sub-moved") // re-points his own
			bob.do("UNSUBSCRIBE\nid:moved\nremove-durable:true\nreceipt:u2\n\n\x00", "u2")
			bob.do("DISCONNECT\nreceipt:bye\n\n\x00", "bye")

			again := as("alice", "client-id:shared-app")
			again.do(durableFrame("feed", topic, "feed"), "sub-feed")
			for _, w := range want {
				if f := again.expect("MESSAGE"); f.body != w {
					t.Fatalf("alice's backlog: got %q, want %q (of %v)", f.body, w, want)
				}
			}
			again.expectQuiet("alice after her backlog")
		})
	}
	b.stop()
}

// TestPressureUserQuotas: one user creating queues and durable
// subscriptions stops at its own quota (ERROR limit-exceeded,
// retryable:false) before it can take the virtual host's max_queues, and
// another user still creates queues. With a journal, alice's durable
// subscriptions are recovered after a restart and still count: her next
// one is refused, bob's is not.
func TestPressureUserQuotas(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	flags, pw := pressureUsers(t, dir)
	flags = append(flags, "-journal-dir", filepath.Join(dir, "journal"),
		"-max-queues", "10", "-max-queues-per-user", "4", "-max-durables-per-user", "3")
	as := func(b *brokerProc, user string) *authConn {
		return authSession(t, b, overTCP, "login:"+user, "passcode:"+pw[user], "client-id:app")
	}
	refused := func(c *authConn, frame string) {
		t.Helper()
		c.send(frame)
		if f := c.checkError(c.read(), "limit-exceeded"); !regexp.MustCompile(`user "alice" holds its limit`).MatchString(f.body) {
			t.Errorf("refusal body %q, want alice's quota named", f.body)
		}
	}

	b := startAuthBroker(t, flags...)
	alice := as(b, "alice")
	for i := range 4 { // persistent messages keep the queues from retiring
		dest := "/queue/alice." + strconv.Itoa(i)
		alice.do("SEND\ndestination:"+dest+"\npersistent:true\nreceipt:q\n\nkept\x00", "q")
	}
	for i := range 3 {
		id := "d" + strconv.Itoa(i)
		alice.do(durableFrame(id, "/topic/orders."+id, id), "sub-"+id)
	}
	refused(as(b, "alice"), sendFrame("/queue/alice.over", "x", "r"))
	refused(as(b, "alice"), durableFrame("d3", "/topic/orders.d3", "d3"))
	bob := as(b, "bob") // 7 of max_queues 10 are alice's: bob still has room
	bob.do(sendFrame("/queue/bob.0", "x", "b0"), "b0")
	bob.do(durableFrame("bd", "/topic/orders.bob", "bd"), "sub-bd")
	b.stop()

	b = startAuthBroker(t, flags...)
	refused(as(b, "alice"), durableFrame("d3", "/topic/orders.d3", "d3"))
	again := as(b, "alice")
	again.do(durableFrame("d0", "/topic/orders.d0", "d0"), "sub-d0") // her own, recovered
	bob = as(b, "bob")
	bob.do(durableFrame("bd2", "/topic/orders.bob2", "bd2"), "sub-bd2")
	bob.do(sendFrame("/queue/bob.1", "x", "b1"), "b1")
	b.stop()
}

// TestPressureReplyAddressGuess: the reply-to the broker writes holds 128
// random bits, not the session id that CONNECTED shows; a reply sent to
// the address the session id would give, or to any guess, reaches nobody,
// and the real address reaches the requester.
func TestPressureReplyAddressGuess(t *testing.T) {
	t.Parallel()
	flags, pw := pressureUsers(t, t.TempDir())
	b := startAuthBroker(t, flags...)
	as := func(user string) (*authConn, string) {
		c := dialAuth(t, b, overTCP)
		f := c.connect("login:"+user, "passcode:"+pw[user])
		if f.command != "CONNECTED" {
			t.Fatalf("CONNECT %s: %s", user, f)
		}
		return c, f.headers["session"]
	}
	alice, session := as("alice")
	bob, _ := as("bob")
	bob.do(subscribeFrame("req", "/queue/requests"), "sub-req")
	alice.do(subscribeFrame("rep", "/temp-queue/replies"), "sub-rep")
	alice.do("SEND\ndestination:/queue/requests\nreply-to:/temp-queue/replies\nreceipt:ask\n\nping\x00", "ask")
	replyTo := bob.expect("MESSAGE").headers["reply-to"]
	if !regexp.MustCompile(`^/reply-queue/[0-9a-f]{32}/replies$`).MatchString(replyTo) {
		t.Fatalf("reply-to %q, want /reply-queue/<32 hex digits>/replies", replyTo)
	}

	forger, _ := as("bob")
	for i, guess := range []string{
		"/reply-queue/" + session + "/replies", // the old scheme: session id from CONNECTED
		"/reply-queue/" + session + "/x",
		"/reply-queue/00000000000000000000000000000000/replies",
	} {
		r := "f" + strconv.Itoa(i)
		forger.do(sendFrame(guess, "forged", r), r)
	}
	alice.expectQuiet("guessed reply addresses")
	bob.do(sendFrame(replyTo, "pong", "pong"), "pong")
	if f := alice.expect("MESSAGE"); f.body != "pong" {
		t.Fatalf("alice got %q, want the real reply pong", f.body)
	}
	b.stop()
}
