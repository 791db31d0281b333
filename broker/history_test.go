package broker

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/frames"
)

// FuzzParseOffset: the token parser never panics, accepts only
// <lowercase hex epoch>-<decimal seq>, and what it accepts formats back to
// the same token.
func FuzzParseOffset(f *testing.F) {
	for _, s := range []string{"ab12-1", "0-0", "deadbeef-18446744073709551615", "-1", "a-", "A-1", "a-01", "a--1",
		"a-18446744073709551616", "0123456789abcdef0-1", "a-1-2", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		epoch, seq, ok := parseOffset(s)
		if !ok {
			return
		}
		if back := epoch + "-" + strconv.FormatUint(seq, 10); back != s {
			t.Fatalf("parseOffset(%q) = %q, %d: formats back as %q", s, epoch, seq, back)
		}
		if epoch == "" || len(epoch) > 16 || strings.Trim(epoch, "0123456789abcdef") != "" {
			t.Fatalf("parseOffset(%q) accepted epoch %q", s, epoch)
		}
	})
}

func TestParseOffset(t *testing.T) {
	for _, tc := range []struct {
		in    string
		epoch string
		seq   uint64
		ok    bool
	}{
		{"ab12-1", "ab12", 1, true},
		{"ab12-0", "ab12", 0, true},
		{"ffffffffffffffff-18446744073709551615", "ffffffffffffffff", 1<<64 - 1, true},
		{"ab12-18446744073709551616", "", 0, false},
		{"AB12-1", "", 0, false},
		{"ab12-01", "", 0, false},
		{"ab12-+1", "", 0, false},
		{"ab12", "", 0, false},
		{"-1", "", 0, false},
		{"ab12-", "", 0, false},
		{"ab12-1-2", "", 0, false},
		{"0123456789abcdef0-1", "", 0, false},
	} {
		epoch, seq, ok := parseOffset(tc.in)
		if epoch != tc.epoch || seq != tc.seq || ok != tc.ok {
			t.Errorf("parseOffset(%q) = %q, %d, %v; want %q, %d, %v", tc.in, epoch, seq, ok, tc.epoch, tc.seq, tc.ok)
		}
	}
}

func TestValidateHistory(t *testing.T) {
	if err := ValidateHistory([]HistoryRule{{Pattern: "/topic/chat.#", Size: 1000, MaxAge: 24 * time.Hour}, {Pattern: "/topic/a", Size: 1}}); err != nil {
		t.Fatalf("valid rules: %v", err)
	}
	for _, tc := range []struct {
		rule HistoryRule
		want string
	}{
		{HistoryRule{Pattern: "/queue/a", Size: 1}, "must be /topic/"},
		{HistoryRule{Pattern: "/topic/", Size: 1}, "must be /topic/"},
		{HistoryRule{Pattern: "/topic/a.b#", Size: 1}, "whole dot-separated segment"},
		{HistoryRule{Pattern: "/topic/a", Size: 0}, "size must be > 0"},
		{HistoryRule{Pattern: "/topic/a", Size: 1, MaxAge: -time.Second}, "max_age must be >= 0"},
	} {
		err := ValidateHistory([]HistoryRule{{Pattern: "/topic/ok", Size: 1}, tc.rule})
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "topics.history[1]") {
			t.Errorf("%+v: %v, want an error naming topics.history[1] and %q", tc.rule, err, tc.want)
		}
	}
}

// TestHistoryRingBounds: the ring keeps the newest size messages; the
// broker-wide byte bound evicts the publishing topic's oldest and is
// never exceeded; first match wins; an invalid rule is ignored.
func TestHistoryRingBounds(t *testing.T) {
	b := New(Config{MaxHistoryBytes: 4096, TopicHistory: []HistoryRule{
		{Pattern: "/topic/a.*", Size: 3}, {Pattern: "/topic/#", Size: 1000}, {Pattern: "bad", Size: 1}}})
	sp := b.spaces[DefaultVirtualHost]
	if len(b.historyRules) != 2 {
		t.Fatalf("%d rules kept, want the 2 valid ones", len(b.historyRules))
	}
	msg := func(body string) *Message {
		return &Message{ID: body, Destination: "/topic/x", Body: []byte(body)}
	}
	for i := range 5 {
		sp.publishTopic("a.one", msg("m"+strconv.Itoa(i)))
	}
	h := sp.history("a.one")
	if h.size != 3 || h.count != 3 || h.first != 3 || h.next != 6 || string(h.at(5).m.Body) != "m4" {
		t.Fatalf("a.one: size %d count %d first %d next %d", h.size, h.count, h.first, h.next)
	}
	if off, _ := h.at(5).m.header("offset"); off != h.epoch+"-5" {
		t.Fatalf("offset header %q", off)
	}
	big := strings.Repeat("b", 1000)
	for i := range 20 {
		sp.publishTopic("b", msg(big+strconv.Itoa(i)))
		if st := b.HistoryStats(); st.Bytes > 4096 {
			t.Fatalf("after %d: %d bytes retained, bound 4096", i, st.Bytes)
		}
	}
	hb := sp.history("b")
	if hb.size != 1000 || hb.count == 0 || hb.count >= 4 || hb.next != 21 || hb.first != 21-uint64(hb.count) {
		t.Fatalf("b: count %d first %d next %d", hb.count, hb.first, hb.next)
	}
	st := b.HistoryStats()
	if st.Topics != 2 || st.Messages != int64(h.count+hb.count) {
		t.Fatalf("stats %+v", st)
	}
	// A message larger than the whole bound is not retained: the ring empties.
	sp.publishTopic("b", msg(strings.Repeat("c", 5000)))
	if hb.count != 0 || hb.first != hb.next || hb.next != 22 {
		t.Fatalf("b after an oversized message: count %d first %d next %d", hb.count, hb.first, hb.next)
	}
}

// header returns the message's first header key's value (tests).
func (m *Message) header(key string) (string, bool) {
	for _, h := range m.Headers {
		if string(h.Key) == key {
			return string(h.Value), true
		}
	}
	return "", false
}

// TestHistoryIdleTopicsDropped: topic names used once do not keep the
// broker-wide bound taken: once it is reached, a new topic (at most once
// a second) drops the histories that retain nothing and have no exact
// subscriber, and gets a history itself; a topic with a subscriber or
// with retained messages is kept.
func TestHistoryIdleTopicsDropped(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	b := New(Config{MaxHistoryBytes: 10 * historyTopicOverhead, Now: func() time.Time { return now },
		TopicHistory: []HistoryRule{{Pattern: "/topic/#", Size: 10, MaxAge: time.Second}}})
	sp := b.spaces[DefaultVirtualHost]
	s := b.NewSession(&fakeTransport{}, "t")
	if err := s.Feed([]byte("CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00SUBSCRIBE\nid:1\ndestination:/topic/t0\n\n\x00")); err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	msg := &Message{ID: "x", Destination: "/topic/x", Body: []byte("x")}
	for i := range 20 {
		sp.publishTopic("t"+strconv.Itoa(i), msg)
	}
	created := b.HistoryStats().Topics
	if created >= 20 || b.HistoryStats().Bytes > 10*historyTopicOverhead {
		t.Fatalf("%d histories, %d bytes: the bound did not hold", created, b.HistoryStats().Bytes)
	}
	if h := sp.history("t19"); h != nil {
		t.Fatal("a topic past the bound got a history")
	}
	now = now.Add(2 * time.Second) // every message is past max_age now
	sp.publishTopic("fresh", msg)
	h := sp.history("fresh")
	if h == nil || h.count != 1 {
		t.Fatal("no history for a new topic after the idle ones expired")
	}
	if got := b.HistoryStats().Topics; got != 2 {
		t.Fatalf("%d histories after the sweep, want 2: fresh and t0 (subscribed)", got)
	}
	if sp.hist.topics["t0"] == nil {
		t.Fatal("t0, which has a subscriber, was dropped")
	}
}

// TestHistoryMetrics: the retained history is exported as gauges without
// topic names.
func TestHistoryMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	b := New(Config{Registerer: reg, TopicHistory: []HistoryRule{{Pattern: "/topic/m.*", Size: 2}}})
	sp := b.spaces[DefaultVirtualHost]
	for i := range 3 {
		sp.publishTopic("m.a", &Message{ID: strconv.Itoa(i), Destination: "/topic/m.a", Body: []byte("x")})
	}
	sp.publishTopic("m.b", &Message{ID: "b", Destination: "/topic/m.b", Body: []byte("y")})
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range families {
		if strings.HasPrefix(mf.GetName(), "stompbox_topic_history_") {
			if len(mf.GetMetric()) != 1 || len(mf.GetMetric()[0].GetLabel()) != 0 {
				t.Fatalf("%s: %d series with labels %v, want one without labels", mf.GetName(), len(mf.GetMetric()), mf.GetMetric()[0].GetLabel())
			}
			got[mf.GetName()] = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	st := b.HistoryStats()
	if got["stompbox_topic_history_topics"] != 2 || got["stompbox_topic_history_messages"] != 3 ||
		got["stompbox_topic_history_bytes"] != float64(st.Bytes) || st.Bytes <= 2*historyTopicOverhead {
		t.Fatalf("gauges %v, stats %+v; want 2 topics, 3 messages", got, st)
	}
}

// TestHistoryReplaySkipsExpired: a retained message whose expires has
// passed is not replayed, and that alone does not make recovered:false;
// history:0 replays nothing.
func TestHistoryReplaySkipsExpired(t *testing.T) {
	now := time.UnixMilli(1_700_000_000_000)
	b := New(Config{Now: func() time.Time { return now }, TopicHistory: []HistoryRule{{Pattern: "/topic/e", Size: 10}}})
	pub, sub := newClient(t, b), newClient(t, b)
	pub.connect()
	sub.connect()
	pub.mustSend(frames.CmdSend, "a", "destination:/topic/e")
	pub.mustSend(frames.CmdSend, "b", "destination:/topic/e", "expires:"+strconv.FormatInt(now.UnixMilli()+1000, 10))
	pub.mustSend(frames.CmdSend, "c", "destination:/topic/e")
	now = now.Add(2 * time.Second)
	sub.mustSend(frames.CmdSubscribe, "", "id:1", "destination:/topic/e", "history:10", "receipt:r")
	got := sub.poll()
	if len(got) != 3 || got[0].Command != frames.CmdReceipt || hdr(got[0], "recovered") != "true" {
		t.Fatalf("got %v (recovered %q), want RECEIPT recovered:true and 2 messages", commands(got), hdr(got[0], "recovered"))
	}
	if string(got[1].Body) != "a" || string(got[2].Body) != "c" || !strings.HasSuffix(hdr(got[2], "offset"), "-3") {
		t.Fatalf("replayed %q, %q (offset %q): want a and c, b expired", got[1].Body, got[2].Body, hdr(got[2], "offset"))
	}
	sub.mustSend(frames.CmdSubscribe, "", "id:2", "destination:/topic/e", "history:0", "receipt:r0")
	got = sub.poll()
	if len(got) != 1 || hdr(got[0], "recovered") != "true" || !strings.HasSuffix(hdr(got[0], "offset"), "-3") {
		t.Fatalf("history:0: %v", commands(got))
	}
}

// TestHistoryReplayLeavesRoomForLive: the replay takes only what is free
// of the outbox beyond half of it: a subscriber whose outbox already holds
// more than half gets no replay (recovered:false) and is not closed.
func TestHistoryReplayLeavesRoomForLive(t *testing.T) {
	b := New(Config{MaxOutboxBytes: 64 << 10, TopicHistory: []HistoryRule{{Pattern: "/topic/h", Size: 100}}})
	pub, sub := newClient(t, b), newClient(t, b)
	pub.connect()
	sub.connect()
	for range 20 {
		pub.mustSend(frames.CmdSend, "small", "destination:/topic/h")
	}
	sub.mustSend(frames.CmdSubscribe, "", "id:plain", "destination:/topic/plain")
	body := strings.Repeat("x", 1000)
	for range 36 { // about 40 KB waiting in sub's outbox
		pub.mustSend(frames.CmdSend, body, "destination:/topic/plain")
	}
	sub.mustSend(frames.CmdSubscribe, "", "id:h", "destination:/topic/h", "history:20", "receipt:r")
	got := sub.poll()
	if sub.closing {
		t.Fatal("the subscriber was closed")
	}
	var receipt *frames.Frame
	replayed := 0
	for _, f := range got {
		switch {
		case f.Command == frames.CmdReceipt:
			receipt = f
		case hdr(f, "replayed") == "true":
			replayed++
		}
	}
	if receipt == nil || hdr(receipt, "recovered") != "false" || replayed != 0 {
		t.Fatalf("%d replayed, RECEIPT %v: want none replayed and recovered:false", replayed, receipt)
	}
	// With the outbox drained, the same request is whole.
	sub.mustSend(frames.CmdSubscribe, "", "id:h2", "destination:/topic/h", "history:20", "receipt:r2")
	got = sub.poll()
	if len(got) != 21 || hdr(got[0], "recovered") != "true" {
		t.Fatalf("after draining: %d frames, recovered %q", len(got), hdr(got[0], "recovered"))
	}
}

// TestHistoryReplayWithinUnackedBound: a client-ack subscription's replay
// is cut to its unacknowledged bound (prefetch-count), newest first, so
// that it is not closed as a slow consumer for its own resume.
func TestHistoryReplayWithinUnackedBound(t *testing.T) {
	b := New(Config{TopicHistory: []HistoryRule{{Pattern: "/topic/h", Size: 100}}})
	pub, sub := newClient(t, b), newClient(t, b)
	pub.connect()
	sub.connect()
	for i := range 20 {
		pub.mustSend(frames.CmdSend, "m"+strconv.Itoa(i), "destination:/topic/h")
	}
	sub.mustSend(frames.CmdSubscribe, "", "id:1", "destination:/topic/h", "ack:client", "prefetch-count:5", "history:20", "receipt:r")
	got := sub.poll()
	if sub.closing || len(got) != 6 || hdr(got[0], "recovered") != "false" {
		t.Fatalf("closing %v, %v (recovered %q): want RECEIPT recovered:false and 5 messages", sub.closing, commands(got), hdr(got[0], "recovered"))
	}
	if string(got[1].Body) != "m15" || string(got[5].Body) != "m19" || hdr(got[5], "ack") == "" {
		t.Fatalf("replayed %q..%q, want m15..m19 with ack ids", got[1].Body, got[5].Body)
	}
}
