package cluster

import (
	"bytes"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// testSessionState is a state with every field used: a message delivered
// to two subscriptions (one shared Message), a redelivered one, a
// subscription without headers.
func testSessionState() *broker.SessionState {
	shared := broker.RecoveredMessage("m-1", "/topic/news", hdrs("destination", "/topic/news", "k", "v\x00"), []byte("shared"), false, 0)
	big := broker.RecoveredMessage("m-2", "/topic/work", nil, bytes.Repeat([]byte{0, 0xff}, 3000), true, 1700000000123)
	return &broker.SessionState{
		ClientID: "app-1",
		NextAck:  1<<40 + 7,
		Subscriptions: [][]frames.Header{
			hdrs("id", "live", "destination", "/topic/news"),
			hdrs("id", "acked", "destination", "/topic/work", "ack", "client-individual"),
			nil,
		},
		Deliveries: []broker.HandedDelivery{
			{Subscription: "acked", Message: big, Count: 3},
			{Subscription: "live", Message: shared, Count: 1},
			{Subscription: "all", Message: shared, Count: 1},
		},
	}
}

func sameState(t *testing.T, got, want *broker.SessionState) {
	t.Helper()
	if got.ClientID != want.ClientID || got.NextAck != want.NextAck || len(got.Subscriptions) != len(want.Subscriptions) ||
		len(got.Deliveries) != len(want.Deliveries) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	for i, hs := range want.Subscriptions {
		if len(got.Subscriptions[i]) != len(hs) {
			t.Fatalf("subscription %d: %d headers, want %d", i, len(got.Subscriptions[i]), len(hs))
		}
		for j, h := range hs {
			g := got.Subscriptions[i][j]
			if !bytes.Equal(g.Key, h.Key) || !bytes.Equal(g.Value, h.Value) {
				t.Fatalf("subscription %d header %d: %q:%q, want %q:%q", i, j, g.Key, g.Value, h.Key, h.Value)
			}
		}
	}
	for i, d := range want.Deliveries {
		g := got.Deliveries[i]
		if g.Subscription != d.Subscription || g.Count != d.Count {
			t.Fatalf("delivery %d: %s×%d, want %s×%d", i, g.Subscription, g.Count, d.Subscription, d.Count)
		}
		sameMessage(t, g.Message, d.Message)
	}
}

func TestSessionStateRoundTrip(t *testing.T) {
	for _, st := range []*broker.SessionState{testSessionState(), {}} {
		got, err := decodeSessionState(encodeSessionState(st))
		if err != nil {
			t.Fatal(err)
		}
		sameState(t, got, st)
	}
	// The shared message is sent once and stays one Message.
	st := testSessionState()
	got, _ := decodeSessionState(encodeSessionState(st))
	if got.Deliveries[1].Message != got.Deliveries[2].Message {
		t.Fatal("a message shared by two subscriptions was decoded twice")
	}
	if n := bytes.Count(encodeSessionState(st), []byte("shared")); n != 1 {
		t.Fatalf("the shared body is encoded %d times", n)
	}
}

func TestSessionRequestRoundTrip(t *testing.T) {
	req := broker.SessionRequest{Token: "AbC.node-1-0011", User: "alice", VHost: "/", Version: "1.2"}
	got, err := decodeSessionRequest(encodeSessionRequest(req))
	if err != nil || got != req {
		t.Fatalf("decoded %+v (%v), want %+v", got, err, req)
	}
	p := encodeSessionRequest(req)
	for _, bad := range [][]byte{nil, {2}, p[:len(p)-1], append(append([]byte(nil), p...), 0)} {
		if _, err := decodeSessionRequest(bad); !errors.Is(err, errCodec) {
			t.Fatalf("request %q decoded (%v)", bad, err)
		}
	}
}

// uv is the uvarint encoding of v.
func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

// cat joins byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestSessionStateMalformed(t *testing.T) {
	v := []byte{sessionCodecVersion}
	msg := encodeMessage(testMessage("m", "/topic/a", "x"))
	empty := cat(v, uv(0), uv(0), uv(0), uv(0), uv(0)) // a valid empty state
	if _, err := decodeSessionState(empty); err != nil {
		t.Fatalf("the empty state: %v", err)
	}
	oneMsg := func(deliveries ...[]byte) []byte {
		return cat(append([][]byte{v, uv(0), uv(0), uv(0), uv(1), uv(uint64(len(msg))), msg}, deliveries...)...)
	}
	if _, err := decodeSessionState(oneMsg(uv(1), uv(1), []byte("s"), uv(0), uv(2))); err != nil {
		t.Fatalf("one delivery: %v", err)
	}
	for name, p := range map[string][]byte{
		"nothing":                 nil,
		"version":                 cat([]byte{2}, empty[1:]),
		"trailing byte":           cat(empty, []byte{0}),
		"client-id length":        cat(v, uv(1<<62)),
		"unterminated varint":     cat(v, uv(0), []byte{0x80, 0x80}),
		"subscription count":      cat(v, uv(0), uv(0), uv(1<<60)),
		"header count":            cat(v, uv(0), uv(0), uv(1), uv(1<<40)),
		"header value missing":    cat(v, uv(0), uv(0), uv(1), uv(1), uv(1), []byte("k")),
		"message count":           cat(v, uv(0), uv(0), uv(0), uv(1<<50)),
		"message length":          cat(v, uv(0), uv(0), uv(0), uv(1), uv(1<<30), msg),
		"bad message":             cat(v, uv(0), uv(0), uv(0), uv(1), uv(3), []byte{9, 0, 0}),
		"delivery count field":    oneMsg(uv(1 << 55)),
		"delivery message index":  oneMsg(uv(1), uv(1), []byte("s"), uv(1), uv(1)),
		"delivery count zero":     oneMsg(uv(1), uv(1), []byte("s"), uv(0), uv(0)),
		"delivery count too big":  oneMsg(uv(1), uv(1), []byte("s"), uv(0), uv(1<<40)),
		"delivery truncated":      oneMsg(uv(1), uv(1), []byte("s"), uv(0)),
		"delivery without a msgs": cat(v, uv(0), uv(0), uv(0), uv(0), uv(1), uv(1), []byte("s"), uv(0), uv(1)),
	} {
		if st, err := decodeSessionState(p); !errors.Is(err, errCodec) {
			t.Errorf("%s: decoded %+v (%v), want a codec error", name, st, err)
		}
	}
	// Every proper prefix of a valid encoding is refused.
	full := encodeSessionState(testSessionState())
	for n := range len(full) {
		if _, err := decodeSessionState(full[:n]); err == nil {
			t.Fatalf("a prefix of %d of %d bytes decoded", n, len(full))
		}
	}
}

// FuzzDecodeSessionState: the decoder never panics, never allocates much
// more than its input, and what it accepts encodes and decodes again.
func FuzzDecodeSessionState(f *testing.F) {
	f.Add(encodeSessionState(testSessionState()))
	f.Add(encodeSessionState(&broker.SessionState{}))
	f.Add(cat([]byte{sessionCodecVersion}, uv(0), uv(0), uv(1<<60)))
	f.Fuzz(func(t *testing.T, p []byte) {
		in := append([]byte(nil), p...)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		st, err := decodeSessionState(in)
		runtime.ReadMemStats(&after)
		// Everything allocated is for an item that input bytes account
		// for (a Message, the largest, takes at least 7 of them).
		if got := after.TotalAlloc - before.TotalAlloc; got > uint64(128*len(p)+8192) {
			t.Fatalf("%d bytes allocated decoding %d", got, len(p))
		}
		if err != nil {
			if !errors.Is(err, errCodec) {
				t.Fatalf("error %v does not wrap errCodec", err)
			}
			return
		}
		again, err := decodeSessionState(encodeSessionState(st))
		if err != nil {
			t.Fatalf("re-encoding a decoded state: %v", err)
		}
		sameState(t, again, st)
	})
}
