package cluster

import (
	"bytes"
	"errors"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

func hdrs(kv ...string) []frames.Header {
	var hs []frames.Header
	for i := 0; i+1 < len(kv); i += 2 {
		hs = append(hs, frames.Header{Key: []byte(kv[i]), Value: []byte(kv[i+1])})
	}
	return hs
}

func sameMessage(t *testing.T, got, want *broker.Message) {
	t.Helper()
	if got.ID != want.ID || got.Destination != want.Destination || got.Persistent != want.Persistent ||
		got.ExpiresAt != want.ExpiresAt || !bytes.Equal(got.Body, want.Body) || len(got.Headers) != len(want.Headers) {
		t.Fatalf("decoded %+v, want %+v", got, want)
	}
	for i := range want.Headers {
		if !bytes.Equal(got.Headers[i].Key, want.Headers[i].Key) || !bytes.Equal(got.Headers[i].Value, want.Headers[i].Value) {
			t.Fatalf("header %d: %q:%q, want %q:%q", i, got.Headers[i].Key, got.Headers[i].Value,
				want.Headers[i].Key, want.Headers[i].Value)
		}
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, m := range []*broker.Message{
		broker.RecoveredMessage("m-1", "/queue/orders", hdrs("destination", "/queue/orders", "x", ""), []byte("hello"), true, 1700000000123),
		broker.RecoveredMessage("", "", nil, nil, false, 0),
		broker.RecoveredMessage("id", "/topic/a", hdrs("k\x00", "v:\n"), bytes.Repeat([]byte{0, 0xff}, 5000), false, -5),
	} {
		p := encodeMessage(m)
		if len(p) > encodedSize(m) {
			t.Fatalf("encoded %d bytes, bound %d", len(p), encodedSize(m))
		}
		got, err := decodeMessage(p)
		if err != nil {
			t.Fatal(err)
		}
		sameMessage(t, got, m)
		// The body is a slice of the payload, not a copy.
		if len(m.Body) > 0 && &got.Body[0] != &p[len(p)-len(m.Body)] {
			t.Fatal("body was copied")
		}
		// Appending to a decoded header cannot overwrite the payload.
		if len(got.Headers) > 0 {
			before := append([]byte(nil), p...)
			_ = append(got.Headers[0].Key, 'Z')
			if !bytes.Equal(before, p) {
				t.Fatal("header slice capacity reaches into the payload")
			}
		}
	}
}

func TestCodecRejectsGarbage(t *testing.T) {
	good := encodeMessage(broker.RecoveredMessage("id", "/queue/q", hdrs("a", "b"), []byte("body"), true, 7))
	cases := [][]byte{
		nil, {1}, {2, 0, 0}, {1, 0x80}, {1, 2, 0}, // short, version, flags
		good[:4],                          // cut in the id
		{1, 0, 0, 0, 0, 0xff, 0xff, 0x7f}, // huge header count
		{1, 0, 0, 0, 0, 1, 5, 'a'},        // header key longer than the payload
		{1, 0, 0, 0xff, 0xff, 0xff, 0xff}, // bad id length
		{1, 0, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}, // varint overflow
	}
	for _, c := range cases {
		if _, err := decodeMessage(c); !errors.Is(err, errCodec) {
			t.Errorf("decodeMessage(%x) = %v, want errCodec", c, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(encodeMessage(broker.RecoveredMessage("id", "/queue/q", hdrs("a", "b"), []byte("body"), true, 7)))
	f.Add([]byte{1, 0, 0, 0, 0, 3})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMessage(data)
		if err != nil {
			if !errors.Is(err, errCodec) {
				t.Fatalf("error %v does not wrap errCodec", err)
			}
			return
		}
		// Whatever decodes re-encodes to a payload that decodes the same.
		again, err := decodeMessage(encodeMessage(m))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		sameMessage(t, again, m)
	})
}

func benchMessage() *broker.Message {
	return broker.RecoveredMessage("a1b2c3d4-17", "/queue/orders",
		hdrs("destination", "/queue/orders", "content-type", "application/json", "x-trace", "0123456789abcdef"),
		bytes.Repeat([]byte("x"), 512), true, 0)
}

func BenchmarkEncode(b *testing.B) {
	m := benchMessage()
	b.ReportAllocs()
	for b.Loop() {
		_ = encodeMessage(m)
	}
}

func BenchmarkDecode(b *testing.B) {
	p := encodeMessage(benchMessage())
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeMessage(p); err != nil {
			b.Fatal(err)
		}
	}
}
