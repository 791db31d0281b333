//go:build e2e

package e2e

import (
	"slices"
	"testing"

	"github.com/go-stomp/stomp/v3"
)

// clusterHistoryConfig gives the nodes of the resume test one history rule.
const clusterHistoryConfig = "topics:\n  history:\n    - {pattern: \"/topic/chat.#\", size: 100}\n"

// TestClusterResumeAndHistoryAcrossNodes, with the real binaries: a
// client's session on node A drops with a message unacknowledged and more
// arriving; the client comes back on node B with its resume-token and gets
// everything (resumed:true), and the topic's history resumes on B with A's
// offsets (recovered:true).
func TestClusterResumeAndHistoryAcrossNodes(t *testing.T) {
	nats := startNATS(t)
	cfg := writeConfig(t, clusterHistoryConfig)
	a := startClusterNode(t, nats.url(), "node-a", "-config", cfg)
	b := startClusterNode(t, nats.url(), "node-b", "-config", cfg)
	const topic = "/topic/chat.e2e"

	// The client on A: one subscription acknowledged by hand.
	c, r := dialHostile(t, a.addr)
	writeHostile(t, c, "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nclient-id:e2e-app\n\n\x00")
	f, err := readHostileFrame(c, r, hostileWait)
	token := f.headers["resume-token"]
	if err != nil || f.command != "CONNECTED" || token == "" {
		t.Fatalf("CONNECT on A: %v, %v", f, err)
	}
	writeHostile(t, c, "SUBSCRIBE\nid:chat\ndestination:"+topic+"\nack:client-individual\nreceipt:s\n\n\x00")
	if f, err := readHostileFrame(c, r, hostileWait); err != nil || f.command != "RECEIPT" {
		t.Fatalf("SUBSCRIBE on A: %v, %v", f, err)
	}
	pub := dialCluster(t, a.addr)
	send := func(body string) {
		t.Helper()
		if err := pub.Send(topic, "text/plain", []byte(body), stomp.SendOpt.Receipt); err != nil {
			t.Fatalf("SEND %s: %v", body, err)
		}
	}
	send("m1")
	first, err := readHostileFrame(c, r, hostileWait)
	if err != nil || first.command != "MESSAGE" || first.body != "m1" || first.headers["offset"] == "" {
		t.Fatalf("the client on A got %v, %v; want m1 with an offset", first, err)
	}
	_ = c.Close() // the connection drops, m1 unacknowledged
	send("m2")
	send("m3")

	// Back on B with the token.
	c2, r2 := dialHostile(t, b.addr)
	writeHostile(t, c2, "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\nclient-id:e2e-app\nresume-token:"+token+"\n\n\x00")
	f, err = readHostileFrame(c2, r2, hostileWait)
	if err != nil || f.command != "CONNECTED" || f.headers["resumed"] != "true" {
		t.Fatalf("resume on B: %v, %v; want CONNECTED resumed:true", f, err)
	}
	var got []string
	offsets := map[string]string{}
	for range 3 {
		m, err := readHostileFrame(c2, r2, hostileWait)
		if err != nil || m.command != "MESSAGE" || m.headers["subscription"] != "chat" {
			t.Fatalf("after the resume on B: %v, %v", m, err)
		}
		got = append(got, m.body+"/"+m.headers["redelivered"])
		offsets[m.body] = m.headers["offset"]
	}
	if want := []string{"m1/true", "m2/", "m3/"}; !slices.Equal(got, want) {
		t.Fatalf("after the resume on B: %v, want %v", got, want)
	}
	if offsets["m1"] != first.headers["offset"] {
		t.Fatalf("m1 came back with offset %q, want A's %q", offsets["m1"], first.headers["offset"])
	}
	// The subscription lives on B now: a publish on B reaches it.
	pubB := dialCluster(t, b.addr)
	if err := pubB.Send(topic, "text/plain", []byte("m4"), stomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	m4, err := readHostileFrame(c2, r2, hostileWait)
	if err != nil || m4.body != "m4" {
		t.Fatalf("a publish on B after the resume: %v, %v", m4, err)
	}

	// The history resumes on B with the offsets A gave.
	h, hr := dialHostile(t, b.addr)
	writeHostile(t, h, "CONNECT\naccept-version:1.2\nhost:/\nheart-beat:0,0\n\n\x00"+
		"SUBSCRIBE\nid:h\ndestination:"+topic+"\nresume-after:"+first.headers["offset"]+"\nreceipt:h\n\n\x00")
	var replay []string
	for len(replay) < 4 {
		m, err := readHostileFrame(h, hr, hostileWait)
		if err != nil {
			t.Fatalf("history on B: %v (got %v)", err, replay)
		}
		switch m.command {
		case "CONNECTED":
		case "RECEIPT":
			if m.headers["recovered"] != "true" {
				t.Fatalf("resume-after on B: %v, want recovered:true", m)
			}
			replay = append(replay, "receipt")
		default:
			replay = append(replay, m.body+"@"+m.headers["offset"])
		}
	}
	if want := []string{"receipt", "m2@" + offsets["m2"], "m3@" + offsets["m3"], "m4@" + m4.headers["offset"]}; !slices.Equal(replay, want) {
		t.Fatalf("history on B: %v, want %v", replay, want)
	}
}
