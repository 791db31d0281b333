package cluster_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

// stompFrame is one frame a rawStomp read.
type stompFrame struct {
	cmd     string
	headers map[string]string
	body    string
}

// rawStomp is a STOMP 1.2 client over plain TCP that can drop its
// connection at any moment, as a client losing its network does. A
// goroutine reads its frames until the connection closes.
type rawStomp struct {
	t      testing.TB
	c      net.Conn
	frames chan stompFrame
	done   chan struct{} // closed when the reader ends
}

// dialRaw connects to addr, sends CONNECT with the extra headers (each
// line ending in a newline) and returns the client and its CONNECTED.
func dialRaw(t testing.TB, addr, headers string) (*rawStomp, stompFrame) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := &rawStomp{t: t, c: c, frames: make(chan stompFrame, 256), done: make(chan struct{})}
	go s.read()
	t.Cleanup(s.drop)
	s.send("CONNECT\naccept-version:1.2\nhost:/\n" + headers)
	f := s.next(10 * time.Second)
	if f.cmd != "CONNECTED" {
		t.Fatalf("CONNECT answered %s %v %q", f.cmd, f.headers, f.body)
	}
	return s, f
}

// read parses frames (ended by NUL; heart-beat EOLs skipped) until the
// connection ends.
func (s *rawStomp) read() {
	defer close(s.done)
	r := bufio.NewReaderSize(s.c, 1<<16)
	for {
		raw, err := r.ReadString(0)
		if err != nil {
			return
		}
		head, body, _ := strings.Cut(strings.TrimLeft(raw, "\r\n"), "\n\n")
		lines := strings.Split(head, "\n")
		f := stompFrame{cmd: lines[0], headers: map[string]string{}, body: strings.TrimSuffix(body, "\x00")}
		for _, l := range lines[1:] {
			k, v, _ := strings.Cut(l, ":")
			if _, seen := f.headers[k]; !seen {
				f.headers[k] = v
			}
		}
		select {
		case s.frames <- f:
		case <-time.After(10 * time.Second):
			return // nobody reads: the test has failed already
		}
	}
}

// send writes a frame without body: its command and header lines (each
// ending in a newline), then the blank line and the NUL.
func (s *rawStomp) send(frame string) {
	s.t.Helper()
	_ = s.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(s.c, frame+"\n\x00"); err != nil {
		s.t.Fatalf("write: %v", err)
	}
}

// next returns the next frame, within timeout.
func (s *rawStomp) next(timeout time.Duration) stompFrame {
	s.t.Helper()
	select {
	case f := <-s.frames:
		return f
	case <-time.After(timeout):
		s.t.Fatalf("no frame within %v", timeout)
	}
	return stompFrame{}
}

// poll returns the next frame if one comes within d.
func (s *rawStomp) poll(d time.Duration) (stompFrame, bool) {
	select {
	case f := <-s.frames:
		return f, true
	case <-time.After(d):
		return stompFrame{}, false
	}
}

// drop closes the connection without DISCONNECT and waits for the reader.
func (s *rawStomp) drop() {
	_ = s.c.Close()
	<-s.done
}

// expect reads the next frame and fails unless it is a cmd.
func (s *rawStomp) expect(cmd string) stompFrame {
	s.t.Helper()
	f := s.next(10 * time.Second)
	if f.cmd != cmd {
		s.t.Fatalf("got %s %v %q, want %s", f.cmd, f.headers, f.body, cmd)
	}
	return f
}

// probeRaw publishes probes on pub to topic until s gets one (the
// subscription's interest reached pub's node), then drains the probes.
func probeRaw(t *testing.T, pub *stomp.Conn, topic string, s *rawStomp) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for got := false; !got; {
		if time.Now().After(deadline) {
			t.Fatalf("probes on %s never arrived", topic)
		}
		if err := pub.Send(topic, "text/plain", []byte("probe"), stomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
		f, ok := s.poll(100 * time.Millisecond)
		if ok && (f.cmd != "MESSAGE" || f.body != "probe") {
			t.Fatalf("got %s %q while probing", f.cmd, f.body)
		}
		got = ok
	}
	for {
		f, ok := s.poll(300 * time.Millisecond)
		if !ok {
			return
		}
		if f.body != "probe" {
			t.Fatalf("got %s %q while draining probes", f.cmd, f.body)
		}
	}
}

// waitParked waits until n parks want sessions.
func waitParked(t *testing.T, n *node, want int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("%d parked sessions on %s", want, n.addr), func() bool {
		return n.srv.Broker().ParkedSessions() == want
	})
}

// handoffs is n's stompbox_cluster_session_handoffs_total for direction
// and result, read from its /metrics.
func handoffs(t *testing.T, n *node, direction, result string) float64 {
	t.Helper()
	resp, err := http.Get(n.admin.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	text, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	prefix := `stompbox_cluster_session_handoffs_total{direction="` + direction + `",result="` + result + `"} `
	for _, l := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(l, prefix); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", l, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics of %s", prefix, n.addr)
	return 0
}

// A session parked on node A resumes on node B: its unacknowledged
// message comes again (redelivered), then those published on A while it
// was away, in order; its subscription then lives on B (a publish on C
// reaches it), and A has forgotten it.
func TestClusterSessionResumesOnAnotherNode(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	const topic = "/topic/sess.news"
	a, connected := dialRaw(t, n[0].addr, "client-id:app\n")
	token := connected.headers["resume-token"]
	if !strings.HasSuffix(token, "."+n[0].link.SessionNode()) {
		t.Fatalf("token %q does not name node A (%s)", token, n[0].link.SessionNode())
	}
	a.send("SUBSCRIBE\nid:s1\ndestination:" + topic + "\nack:client-individual\nreceipt:r1\n")
	a.expect("RECEIPT")
	pubA := n[0].dial(t)
	sendReceipted(t, pubA, topic, "m1")
	if f := a.expect("MESSAGE"); f.body != "m1" {
		t.Fatalf("got %q, want m1", f.body)
	}
	a.drop()
	waitParked(t, n[0], 1)
	sendReceipted(t, pubA, topic, "m2")
	sendReceipted(t, pubA, topic, "m3")

	b, connected := dialRaw(t, n[1].addr, "client-id:app\nresume-token:"+token+"\n")
	if connected.headers["resumed"] != "true" || !strings.HasSuffix(connected.headers["resume-token"], "."+n[1].link.SessionNode()) {
		t.Fatalf("CONNECTED on B: %v, want resumed:true and a token of B", connected.headers)
	}
	var got []string
	var redelivered stompFrame
	for range 3 {
		f := b.expect("MESSAGE")
		got = append(got, f.headers["subscription"]+"/"+f.body+"/"+f.headers["redelivered"])
		if f.body == "m1" {
			redelivered = f
		}
	}
	if want := "[s1/m1/true s1/m2/ s1/m3/]"; fmt.Sprint(got) != want {
		t.Fatalf("after the resume: %v, want %s", got, want)
	}
	b.send("ACK\nid:" + redelivered.headers["ack"] + "\nreceipt:k1\n")
	if f := b.expect("RECEIPT"); f.headers["receipt-id"] != "k1" {
		t.Fatalf("receipt %v", f.headers)
	}
	if p := n[0].srv.Broker().ParkedSessions(); p != 0 {
		t.Fatalf("A still parks %d sessions", p)
	}
	// The subscription lives on B now: a publish on C reaches it.
	pubC := n[2].dial(t)
	probeRaw(t, pubC, topic, b)
	sendReceipted(t, pubC, topic, "m4")
	if f := b.expect("MESSAGE"); f.body != "m4" {
		t.Fatalf("got %q, want m4", f.body)
	}
	if v := handoffs(t, n[1], "in", "resumed"); v != 1 {
		t.Fatalf("B counts %v resumed handovers in, want 1", v)
	}
	if v := handoffs(t, n[0], "out", "resumed"); v != 1 {
		t.Fatalf("A counts %v resumed handovers out, want 1", v)
	}
	// The token was used: presenting it again resumes nothing.
	if _, again := dialRaw(t, n[2].addr, "client-id:app\nresume-token:"+token+"\n"); again.headers["resumed"] != "false" {
		t.Fatalf("a used token resumed again: %v", again.headers)
	}
	if v := handoffs(t, n[0], "out", "unknown"); v != 1 {
		t.Fatalf("A counts %v unknown handovers out, want 1", v)
	}
}

// A parked session whose outbox holds more than NATS's max payload (1 MiB)
// resumes whole: the state crosses in chunks, A waiting for B to have
// read each one (a window of one chunk) before it sends the next.
func TestClusterSessionBigOutboxResumes(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	n[0].link.SetHandoffWindow(1 << 20)
	const topic = "/topic/sess.big"
	a, connected := dialRaw(t, n[0].addr, "")
	a.send("SUBSCRIBE\nid:s1\ndestination:" + topic + "\nreceipt:r1\n")
	a.expect("RECEIPT")
	a.drop()
	waitParked(t, n[0], 1)
	pub := n[0].dial(t)
	const count, size = 48, 64 << 10 // 3 MiB
	filler := strings.Repeat("x", size)
	for i := range count {
		sendReceipted(t, pub, topic, fmt.Sprintf("%03d", i)+filler)
	}
	b, resumed := dialRaw(t, n[1].addr, "resume-token:"+connected.headers["resume-token"]+"\n")
	if resumed.headers["resumed"] != "true" {
		t.Fatalf("CONNECTED on B: %v, want resumed:true", resumed.headers)
	}
	for i := range count {
		f := b.expect("MESSAGE")
		if want := fmt.Sprintf("%03d", i); !strings.HasPrefix(f.body, want) || len(f.body) != 3+size {
			t.Fatalf("message %d: %q… (%d bytes), want %s… (%d bytes)", i, f.body[:min(8, len(f.body))], len(f.body), want, 3+size)
		}
	}
	if f, ok := b.poll(200 * time.Millisecond); ok {
		t.Fatalf("unexpected %s %q after the %d messages", f.cmd, f.body[:min(8, len(f.body))], count)
	}
}

// A durable subscription of a session parked on A resumes on B: A lets
// it go before answering, so B holds it again (no subscription-in-use),
// and what was stored for it while away is delivered on B, then what is
// published afterwards.
func TestClusterSessionDurableResumesOnAnotherNode(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	const topic = "/topic/sess.dur"
	a, connected := dialRaw(t, n[0].addr, "client-id:dur\n")
	a.send("SUBSCRIBE\nid:d1\ndestination:" + topic + "\ndurable-subscription-name:dn\nack:client-individual\nreceipt:r1\n")
	a.expect("RECEIPT")
	waitKnown(t, 1, n...)
	a.drop()
	waitParked(t, n[0], 1)
	pubC := n[2].dial(t)
	sendReceipted(t, pubC, topic, "d1")

	b, resumed := dialRaw(t, n[1].addr, "client-id:dur\nresume-token:"+connected.headers["resume-token"]+"\n")
	if resumed.headers["resumed"] != "true" {
		t.Fatalf("CONNECTED on B: %v, want resumed:true", resumed.headers)
	}
	f := b.expect("MESSAGE")
	if f.body != "d1" || f.headers["subscription"] != "d1" {
		t.Fatalf("got %v %q, want d1 on d1", f.headers, f.body)
	}
	b.send("ACK\nid:" + f.headers["ack"] + "\nreceipt:k1\n")
	b.expect("RECEIPT")
	sendReceipted(t, pubC, topic, "d2")
	if f := b.expect("MESSAGE"); f.body != "d2" {
		t.Fatalf("got %q, want d2", f.body)
	}
}

// A token of a node that is gone resumes nothing, at once: NATS has no
// responder on its subject, so the CONNECT does not wait for a timeout.
func TestClusterSessionOfGoneNode(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	a, connected := dialRaw(t, n[0].addr, "client-id:gone\n")
	a.send("SUBSCRIBE\nid:s1\ndestination:/topic/sess.gone\nreceipt:r1\n")
	a.expect("RECEIPT")
	a.drop()
	waitParked(t, n[0], 1)
	n[0].stop()
	start := time.Now()
	_, resumed := dialRaw(t, n[1].addr, "client-id:gone\nresume-token:"+connected.headers["resume-token"]+"\n")
	if took := time.Since(start); resumed.headers["resumed"] != "false" || took > 2*time.Second {
		t.Fatalf("CONNECTED %v after %v, want resumed:false at once", resumed.headers, took)
	}
	if v := handoffs(t, n[1], "in", "unknown"); v != 1 {
		t.Fatalf("B counts %v unknown handovers in, want 1", v)
	}
}

// A token presented on B while its session is still connected on A takes
// the session over: A's connection ends with an ERROR, B resumes it.
func TestClusterSessionTakenOverFromAnotherNode(t *testing.T) {
	_, n := threeNodes(t, nodeOpts{})
	const topic = "/topic/sess.live"
	a, connected := dialRaw(t, n[0].addr, "client-id:live\n")
	a.send("SUBSCRIBE\nid:s1\ndestination:" + topic + "\nreceipt:r1\n")
	a.expect("RECEIPT")
	b, resumed := dialRaw(t, n[1].addr, "client-id:live\nresume-token:"+connected.headers["resume-token"]+"\n")
	if resumed.headers["resumed"] != "true" {
		t.Fatalf("CONNECTED on B: %v, want resumed:true", resumed.headers)
	}
	if f := a.expect("ERROR"); !strings.Contains(f.headers["message"]+f.headers["error-code"], "taken") {
		t.Fatalf("A's connection ended with %v %q", f.headers, f.body)
	}
	pub := n[2].dial(t)
	probeRaw(t, pub, topic, b)
	if p := n[0].srv.Broker().ParkedSessions(); p != 0 {
		t.Fatalf("A still parks %d sessions", p)
	}
}
