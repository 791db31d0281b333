package broker

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

var adminT0 = time.Date(2026, 12, 5, 4, 0, 0, 0, time.UTC)

// adminClock is a settable clock for the admin tests.
func adminClock(at *time.Time) func() time.Time { return func() time.Time { return *at } }

// destinationsByName indexes a Destinations snapshot by vhost and name.
func destinationsByName(b *Broker) map[string]DestinationInfo {
	m := map[string]DestinationInfo{}
	for _, d := range b.Destinations(nil) {
		m[d.VHost+" "+d.Name] = d
	}
	return m
}

func TestAdminDestinations(t *testing.T) {
	now := adminT0
	b := New(Config{Now: adminClock(&now), VirtualHosts: []string{"/", "other"}})
	c := newClient(t, b)
	c.connect("client-id:app")
	for i := range 3 {
		c.mustSend(frames.CmdSend, fmt.Sprint("a", i), "destination:/queue/a")
		now = now.Add(time.Second)
	}
	c.mustSend(frames.CmdSend, "b0", "destination:/queue/b")
	c.mustSend(frames.CmdSend, "b1", "destination:/queue/b")
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/b", "id:b", "ack:client", "prefetch-count:1")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:t")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/x.*", "id:x")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/news", "id:d", "durable-subscription-name:n")
	c.mustSend(frames.CmdSubscribe, "", "destination:/temp-queue/r", "id:r")
	c.poll()
	o := newClient(t, b)
	o.connect("host:other")
	o.mustSend(frames.CmdSend, "o", "destination:/queue/a")

	got := destinationsByName(b)
	tests := []struct {
		key                          string
		kind                         DestinationKind
		messages, unacked, consumers int
		enqueued, delivered          uint64
		oldest                       time.Time
		dlq                          string
	}{
		{"/ /queue/a", KindQueue, 3, 0, 0, 3, 0, adminT0, "/queue/DLQ.a"},
		{"/ /queue/b", KindQueue, 2, 1, 1, 2, 1, now, "/queue/DLQ.b"},
		{"/ /topic/t", KindTopic, 0, 0, 1, 0, 0, time.Time{}, ""},
		{"/ /topic/x.*", KindTopic, 0, 0, 1, 0, 0, time.Time{}, ""},
		{"/ /durable//app/n", KindDurable, 0, 0, 1, 0, 0, time.Time{}, "/queue/DLQ.news"},
		{"other /queue/a", KindQueue, 1, 0, 0, 1, 0, now, "/queue/DLQ.a"},
	}
	for _, tt := range tests {
		d, ok := got[tt.key]
		if !ok {
			t.Errorf("%s missing from %v", tt.key, slices.Collect(mapKeys(got)))
			continue
		}
		if d.Kind != tt.kind || d.Messages != tt.messages || d.Unacked != tt.unacked || d.Consumers != tt.consumers ||
			d.Enqueued != tt.enqueued || d.Delivered != tt.delivered || !d.Oldest.Equal(tt.oldest) || d.DLQ != tt.dlq {
			t.Errorf("%s = %+v, want kind %s messages %d unacked %d consumers %d enqueued %d delivered %d oldest %v dlq %q",
				tt.key, d, tt.kind, tt.messages, tt.unacked, tt.consumers, tt.enqueued, tt.delivered, tt.oldest, tt.dlq)
		}
	}
	if d := got["/ /queue/a"]; d.Bytes != 3*(2+64+len("destination:/queue/a\n")) {
		t.Errorf("/queue/a bytes %d", d.Bytes)
	}
	temps := 0
	for _, d := range got {
		if d.Kind == KindTemporary {
			temps++
		}
	}
	if temps != 1 {
		t.Errorf("%d temporary queues listed, want 1", temps)
	}
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

func TestAdminDurables(t *testing.T) {
	now := adminT0
	b := New(Config{Now: adminClock(&now)})
	c := newClient(t, b)
	c.connect("client-id:app")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/a.#", "id:1", "durable-subscription-name:one")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/b", "id:2", "durable-subscription-name:two")
	now = now.Add(time.Minute)
	c.mustSend(frames.CmdUnsubscribe, "", "id:2")
	c.mustSend(frames.CmdSend, "hello", "destination:/topic/b")
	c.poll()
	got := b.Durables(nil)
	slices.SortFunc(got, func(x, y DurableInfo) int { return strings.Compare(x.Name, y.Name) })
	want := []DurableInfo{
		{VHost: "/", User: "", Name: "one", Topic: "/topic/a.#", Queue: "/durable//app/one", Active: true},
		{VHost: "/", User: "", Name: "two", Topic: "/topic/b", Queue: "/durable//app/two", Messages: 1,
			Bytes: 5 + 64 + len("destination:/topic/b\n"), LastActive: now},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("Durables = %+v\nwant %+v", got, want)
	}
}

func TestPeekQueueLeavesDelivery(t *testing.T) {
	b := New(Config{})
	c := newClient(t, b)
	c.connect()
	for _, body := range []string{"first message", "second", "third"} {
		c.mustSend(frames.CmdSend, body, "destination:/queue/p", "x-k:v", "persistent:true")
	}
	if _, err := b.PeekQueue("/", "/queue/none", 10, 10); !errors.Is(err, ErrNoSuchDestination) {
		t.Fatalf("peek of a missing queue: %v", err)
	}
	before := destinationsByName(b)["/ /queue/p"]
	got, err := b.PeekQueue("/", "/queue/p", 2, 5)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("peeked %d, want 2", len(got))
	}
	if string(got[0].Body) != "first" || got[0].BodySize != len("first message") || !got[0].Persistent ||
		got[0].Deliveries != 0 || got[0].Unacked || string(got[1].Body) != "secon" {
		t.Fatalf("peeked %+v", got)
	}
	wantHeaders := [][2]string{{"message-id", got[0].ID}, {"destination", "/queue/p"}, {"x-k", "v"}, {"persistent", "true"}}
	if !slices.Equal(got[0].Headers, wantHeaders) {
		t.Fatalf("headers %v, want %v", got[0].Headers, wantHeaders)
	}
	if after := destinationsByName(b)["/ /queue/p"]; after != before {
		t.Fatalf("peek changed the queue: %+v -> %+v", before, after)
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/p", "id:s")
	fs := c.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"first message", "second", "third"}) {
		t.Fatalf("after peek the consumer got %v", got)
	}
	for i, f := range fs[:2] {
		if hdr(f, "redelivered") != "" || hdr(f, "message-id") != got[i].ID {
			t.Fatalf("delivery %d: %v", i, headerLines(f))
		}
	}
}

func TestPurgeQueueJournaled(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j})
	c := newClient(t, b)
	c.connect()
	for i := range 4 {
		c.mustSend(frames.CmdSend, fmt.Sprint("m", i), "destination:/queue/p", "persistent:true")
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/p", "id:s", "ack:client-individual", "prefetch-count:1")
	if got := bodies(c.poll()); !slices.Equal(got, []string{"m0"}) {
		t.Fatalf("consumer got %v", got)
	}
	purged, err := b.PurgeQueue("/", "/queue/p")
	if err != nil || purged != 3 {
		t.Fatalf("purge = %d, %v; want 3", purged, err)
	}
	d := destinationsByName(b)["/ /queue/p"]
	if d.Messages != 1 || d.Unacked != 1 {
		t.Fatalf("after purge %+v, want the unacked message only", d)
	}
	if _, err := b.PurgeQueue("/", "/queue/none"); !errors.Is(err, ErrNoSuchDestination) {
		t.Fatalf("purge of a missing queue: %v", err)
	}

	// A restart brings back only the message still in flight.
	b2 := New(Config{Journal: j})
	if err := b2.Recover(); err != nil {
		t.Fatal(err)
	}
	r := newClient(t, b2)
	r.connect()
	r.mustSend(frames.CmdSubscribe, "", "destination:/queue/p", "id:s")
	if got := bodies(r.poll()); !slices.Equal(got, []string{"m0"}) {
		t.Fatalf("after purge and restart got %v, want [m0]", got)
	}
}

func TestPurgeQueueWakesBlockedProducer(t *testing.T) {
	b := New(Config{MaxQueueMessages: 1})
	c := newClient(t, b)
	c.connect()
	c.mustSend(frames.CmdSend, "1", "destination:/queue/f")
	c.mustSend(frames.CmdSend, "2", "destination:/queue/f") // blocks: the queue is full
	pokes := c.tr.pokes.Load()
	if n, err := b.PurgeQueue("/", "/queue/f"); err != nil || n != 1 {
		t.Fatalf("purge = %d, %v", n, err)
	}
	if c.tr.pokes.Load() == pokes {
		t.Fatal("the blocked producer was not poked")
	}
	if err := c.s.Poked(); err != nil {
		t.Fatal(err)
	}
	if d := destinationsByName(b)["/ /queue/f"]; d.Messages != 1 {
		t.Fatalf("after the purge and the retry the queue holds %d, want the held SEND's 1", d.Messages)
	}
}

func TestDeleteQueue(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j})
	c := newClient(t, b)
	c.connect("client-id:app")
	for i := range 2 {
		c.mustSend(frames.CmdSend, fmt.Sprint("m", i), "destination:/queue/gone", "persistent:true")
	}
	c.mustSend(frames.CmdSend, "k", "destination:/queue/kept", "persistent:true")
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/busy", "id:b")
	c.mustSend(frames.CmdSubscribe, "", "destination:/topic/t", "id:d", "durable-subscription-name:n")
	c.mustSend(frames.CmdSubscribe, "", "destination:/temp-queue/r", "id:r")
	c.poll()
	temp := ""
	for _, d := range b.Destinations(nil) {
		if d.Kind == KindTemporary {
			temp = d.Name
		}
	}
	tests := []struct {
		name    string
		vhost   string
		dest    string
		dropped int
		err     error
	}{
		{"missing queue", "/", "/queue/none", 0, ErrNoSuchDestination},
		{"missing vhost", "nope", "/queue/gone", 0, ErrNoSuchDestination},
		{"topic", "/", "/topic/t", 0, ErrNoSuchDestination},
		{"durable", "/", "/durable//app/n", 0, ErrNotAQueue},
		{"temporary", "/", temp, 0, ErrNotAQueue},
		{"has consumers", "/", "/queue/busy", 0, ErrNotAQueue},
		{"plain", "/", "/queue/gone", 2, nil},
		{"again", "/", "/queue/gone", 0, ErrNoSuchDestination},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := b.DeleteQueue(tt.vhost, tt.dest)
			if n != tt.dropped || !errors.Is(err, tt.err) || (tt.err == nil) != (err == nil) {
				t.Fatalf("DeleteQueue(%q) = %d, %v; want %d, %v", tt.dest, n, err, tt.dropped, tt.err)
			}
		})
	}
	if _, ok := destinationsByName(b)["/ /queue/gone"]; ok {
		t.Fatal("deleted queue still listed")
	}
	b2 := New(Config{Journal: j})
	if err := b2.Recover(); err != nil {
		t.Fatal(err)
	}
	got := destinationsByName(b2)
	if _, ok := got["/ /queue/gone"]; ok {
		t.Fatal("deleted queue came back after a restart")
	}
	if got["/ /queue/kept"].Messages != 1 {
		t.Fatalf("other queue after restart: %+v", got["/ /queue/kept"])
	}
}

// deadLetter puts the bodies into /queue/DLQ.jobs through NACKs past
// MaxRedeliveries (1).
func deadLetter(t *testing.T, c *client, bodies ...string) {
	t.Helper()
	for _, body := range bodies {
		c.mustSend(frames.CmdSend, body, "destination:/queue/jobs", "persistent:true", "x-k:v")
	}
	c.mustSend(frames.CmdSubscribe, "", "destination:/queue/jobs", "id:s", "ack:client-individual")
	for range 2 * len(bodies) {
		fs := c.poll()
		for _, f := range fs {
			if f.Command == frames.CmdMessage {
				c.mustSend(frames.CmdNack, "", "id:"+hdr(f, "ack"))
			}
		}
	}
	c.mustSend(frames.CmdUnsubscribe, "", "id:s")
	c.poll()
}

func TestMoveDeadLetters(t *testing.T) {
	j := &memJournal{}
	b := New(Config{Journal: j, MaxRedeliveries: 1})
	c := newClient(t, b)
	c.connect()
	deadLetter(t, c, "a", "b", "c")
	if d := destinationsByName(b)["/ /queue/DLQ.jobs"]; d.Messages != 3 || d.Kind != KindDLQ {
		t.Fatalf("DLQ %+v, want 3 messages", d)
	}
	c.mustSend(frames.CmdSend, "o", "destination:/queue/other")
	if _, err := b.MoveDeadLetters("/", "/queue/other", 0); !errors.Is(err, ErrNotAQueue) {
		t.Fatalf("move from a plain queue: %v", err)
	}
	if _, err := b.MoveDeadLetters("/", "/queue/DLQ.none", 0); !errors.Is(err, ErrNoSuchDestination) {
		t.Fatalf("move from a missing DLQ: %v", err)
	}
	moved, err := b.MoveDeadLetters("/", "/queue/DLQ.jobs", 2)
	if err != nil || moved != 2 {
		t.Fatalf("move = %d, %v; want 2", moved, err)
	}
	last := j.appends[len(j.appends)-1]
	if !slices.Equal(ops(last), []string{"remove /queue/DLQ.jobs", "enqueue /queue/jobs"}) {
		t.Fatalf("a move appended %v, want the removal and the enqueue together", ops(last))
	}

	// A restart: two messages back in jobs, one left in the DLQ.
	b2 := New(Config{Journal: j, MaxRedeliveries: 1})
	if err := b2.Recover(); err != nil {
		t.Fatal(err)
	}
	got := destinationsByName(b2)
	if got["/ /queue/jobs"].Messages != 2 || got["/ /queue/DLQ.jobs"].Messages != 1 {
		t.Fatalf("after restart jobs %+v, DLQ %+v", got["/ /queue/jobs"], got["/ /queue/DLQ.jobs"])
	}
	r := newClient(t, b2)
	r.connect()
	r.mustSend(frames.CmdSubscribe, "", "destination:/queue/jobs", "id:s")
	fs := r.poll()
	if got := bodies(fs); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("moved back: %v", got)
	}
	for _, f := range fs {
		if f.Command == frames.CmdMessage && (hdr(f, "dlq-reason") != "" || hdr(f, "original-destination") != "" || hdr(f, "x-k") != "v") {
			t.Fatalf("moved message headers %v", headerLines(f))
		}
	}
}

func TestMoveDeadLettersStopsAtFullQueue(t *testing.T) {
	b := New(Config{MaxRedeliveries: 1, MaxQueueMessages: 2})
	c := newClient(t, b)
	c.connect()
	deadLetter(t, c, "a", "b")
	c.mustSend(frames.CmdSend, "x", "destination:/queue/jobs")
	moved, err := b.MoveDeadLetters("/", "/queue/DLQ.jobs", 0)
	if moved != 1 || !errors.Is(err, ErrQueueFull) {
		t.Fatalf("move = %d, %v; want 1 and ErrQueueFull", moved, err)
	}
	got := destinationsByName(b)
	if got["/ /queue/jobs"].Messages != 2 || got["/ /queue/DLQ.jobs"].Messages != 1 {
		t.Fatalf("jobs %+v, DLQ %+v", got["/ /queue/jobs"], got["/ /queue/DLQ.jobs"])
	}
	left, err := b.PeekQueue("/", "/queue/DLQ.jobs", 10, 10)
	if err != nil || len(left) != 1 || string(left[0].Body) != "b" {
		t.Fatalf("DLQ left %+v, %v; want b at its front", left, err)
	}
}
