package cluster_test

import (
	"bufio"
	"net"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"

	"github.com/stompbox/stompbox/broker"
)

// rawFrames opens a plain TCP connection to addr, sends CONNECT and then
// frame, and returns the next n frames after CONNECTED (headers; the
// command under the key "", the body under "\x00"), read within 10s.
func rawFrames(t testing.TB, addr, frame string, n int) []map[string]string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("CONNECT\naccept-version:1.2\nhost:/\n\n\x00" + frame + "\x00")); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	var got []map[string]string
	for len(got) < n {
		raw, err := r.ReadString(0)
		if err != nil {
			t.Fatalf("reading frame %d of %d: %v (got %v)", len(got)+1, n, err, got)
		}
		head, body, _ := strings.Cut(strings.TrimLeft(raw, "\n"), "\n\n")
		lines := strings.Split(head, "\n")
		if lines[0] == "CONNECTED" {
			continue
		}
		hs := map[string]string{"": lines[0], "\x00": strings.TrimSuffix(body, "\x00")}
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ":")
			if _, seen := hs[k]; !seen {
				hs[k] = v
			}
		}
		got = append(got, hs)
	}
	return got
}

// offsetSeqOf is the sequence of an offset token <epoch>-<seq>.
func offsetSeqOf(t testing.TB, off string) uint64 {
	t.Helper()
	_, num, ok := strings.Cut(off, "-")
	seq, err := strconv.ParseUint(num, 10, 64)
	if !ok || err != nil {
		t.Fatalf("offset %q is not <epoch>-<seq>", off)
	}
	return seq
}

var chatHistory = broker.Config{TopicHistory: []broker.HistoryRule{{Pattern: "/topic/chat.#", Size: 100}}}

// Topic history across nodes: messages published on A reach subscribers
// on B and C with the same offsets; a client resumes on any node, one
// started later included, with what it missed (recovered:true).
func TestClusterHistoryResumeOnAnyNode(t *testing.T) {
	nats, n := threeNodes(t, nodeOpts{broker: chatHistory})
	for _, nd := range n {
		waitFor(t, 15*time.Second, "node ready (history mirrored)", nd.ready)
	}
	exact, err := n[1].dial(t).Subscribe("/topic/chat.room", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	wild, err := n[2].dial(t).Subscribe("/topic/chat.#", stomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	pub := n[0].dial(t)
	const count = 5
	for i := range count {
		sendReceipted(t, pub, "/topic/chat.room", "m"+itoa(i))
	}
	var offsets [2][]string
	for j, sub := range []*stomp.Subscription{exact, wild} {
		for i := range count {
			m := recv(t, sub, 10*time.Second)
			if string(m.Body) != "m"+itoa(i) {
				t.Fatalf("subscriber %d: message %d is %q: lost, duplicated or out of order", j, i, m.Body)
			}
			offsets[j] = append(offsets[j], m.Header.Get("offset"))
		}
	}
	if !slices.Equal(offsets[0], offsets[1]) {
		t.Fatalf("offsets differ across nodes: B %v, C %v", offsets[0], offsets[1])
	}
	for i := 1; i < count; i++ {
		if offsetSeqOf(t, offsets[0][i]) <= offsetSeqOf(t, offsets[0][i-1]) {
			t.Fatalf("offsets not increasing: %v", offsets[0])
		}
	}

	// A fourth node, started after the messages were stored, loads them.
	late := startNode(t, nats.URLs(), "node-d", nodeOpts{broker: chatHistory})
	waitFor(t, 15*time.Second, "late node ready (history mirrored)", late.ready)
	for _, nd := range []*node{n[0], n[2], late} {
		fs := rawFrames(t, nd.addr, "SUBSCRIBE\nid:r\ndestination:/topic/chat.room\nresume-after:"+offsets[0][1]+"\nreceipt:r\n\n", 1+count-2)
		if fs[0][""] != "RECEIPT" || fs[0]["recovered"] != "true" || fs[0]["offset"] != offsets[0][count-1] {
			t.Fatalf("resume on %s: %v, want RECEIPT recovered:true offset:%s", nd.addr, fs[0], offsets[0][count-1])
		}
		for i, f := range fs[1:] {
			if f[""] != "MESSAGE" || f["\x00"] != "m"+itoa(i+2) || f["offset"] != offsets[0][i+2] || f["replayed"] != "true" {
				t.Fatalf("resume on %s: replay %d is %v, want m%d at %s, replayed", nd.addr, i, f, i+2, offsets[0][i+2])
			}
		}
	}
	fs := rawFrames(t, late.addr, "SUBSCRIBE\nid:r\ndestination:/topic/chat.room\nhistory:2\nreceipt:r\n\n", 3)
	if fs[0]["recovered"] != "true" || fs[1]["\x00"] != "m3" || fs[2]["\x00"] != "m4" {
		t.Fatalf("history:2 on the late node: %v", fs)
	}
	none(t, exact, 0)
}
