package journaltest

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// Message returns test message i: its content depends only on i and
// covers what a journal must keep exactly: repeated and empty headers,
// bytes that need escaping on the wire, bodies that are empty, binary
// (NUL, 0xff, every byte value) or larger than a page, both values of
// Persistent and expiries.
func Message(i int) *broker.Message {
	id := "m-" + strconv.Itoa(i)
	dest := fmt.Sprintf("/queue/dest-%d", i%7)
	hs := []frames.Header{
		{Key: []byte("destination"), Value: []byte(dest)},
		{Key: []byte("content-type"), Value: []byte("application/octet-stream")},
		{Key: []byte("x-rep"), Value: []byte("1")},
		{Key: []byte("x-rep"), Value: []byte("2")},
		{Key: []byte("x-empty"), Value: []byte{}},
		{Key: []byte("x-odd"), Value: []byte("a:b\nc\\d\r")},
		{Key: []byte("x-i"), Value: []byte(strconv.Itoa(i))},
	}
	hs = hs[:2+i%6]
	var body []byte
	switch i % 5 {
	case 0:
		body = []byte{}
	case 1:
		body = []byte{'a', 0, 'b', 0xff, 0, 0xff}
	case 2:
		body = []byte(strings.Repeat("hello ", i%13+1))
	case 3:
		body = bytes.Repeat([]byte{0xff, 0x00, byte(i)}, 1500)
	case 4:
		for c := range 256 {
			body = append(body, byte(c))
		}
	}
	var expires int64
	if i%3 != 0 {
		expires = 1_700_000_000_000 + int64(i)
	}
	return broker.RecoveredMessage(id, dest, hs, body, i%2 == 0, expires)
}

// sized is message i with an n-byte body.
func sized(i, n int) *broker.Message {
	m := Message(i)
	return broker.RecoveredMessage(m.ID, m.Destination, m.Headers[:1], bytes.Repeat([]byte{byte(i)}, n), true, 0)
}

// index is i of a message made by Message(i).
func index(m *broker.Message) int {
	i, err := strconv.Atoi(strings.TrimPrefix(m.ID, "m-"))
	if err != nil {
		return -1
	}
	return i
}

// Enqueue is the record of m entering queue.
func Enqueue(queue string, m *broker.Message) broker.JournalRecord {
	return broker.JournalRecord{Op: broker.OpEnqueue, Queue: queue, MessageID: m.ID, Message: m}
}

// Remove is the record of enqueue's message leaving its queue.
func Remove(enqueue broker.JournalRecord) broker.JournalRecord {
	return broker.JournalRecord{Op: broker.OpRemove, Queue: enqueue.Queue, MessageID: enqueue.MessageID}
}

// Deliveries is the record of enqueue's message having been delivered n
// times.
func Deliveries(enqueue broker.JournalRecord, n int) broker.JournalRecord {
	return broker.JournalRecord{Op: broker.OpDeliveries, Queue: enqueue.Queue, MessageID: enqueue.MessageID, Deliveries: n}
}

// DurableCreate is the record of durable subscription d being created,
// with the queue name the broker gives it (for names without characters
// the broker escapes): /durable/<user>/<client-id>/<name>, or without the
// user for an unowned one.
func DurableCreate(d broker.DurableSpec) broker.JournalRecord {
	queue := "/durable/" + d.User + "/" + d.ClientID + "/" + d.Name
	if d.Unowned {
		queue = "/durable/" + d.ClientID + "/" + d.Name
	}
	return broker.JournalRecord{Op: broker.OpDurableCreate, Queue: queue, Durable: d}
}

// DurableDelete is the record of create's durable subscription being
// deleted.
func DurableDelete(create broker.JournalRecord) broker.JournalRecord {
	create.Op = broker.OpDurableDelete
	return create
}

// HistoryAppend is the record of m retained in the history of topic
// (a journal topic key, e.g. /topic/chat) at offset epoch-seq.
func HistoryAppend(topic, epoch string, seq uint64, m *broker.Message) broker.JournalRecord {
	return broker.JournalRecord{Op: broker.OpHistoryAppend, Queue: topic, MessageID: m.ID, Message: m,
		Epoch: epoch, HistorySeq: seq, PublishedAt: int64(1_700_000_000_000 + seq)}
}

// HistoryTrim is the record of topic's history of epoch evicted up to
// seq.
func HistoryTrim(topic, epoch string, seq uint64) broker.JournalRecord {
	return broker.JournalRecord{Op: broker.OpHistoryTrim, Queue: topic, Epoch: epoch, HistorySeq: seq}
}

// HistorySeal is the record of topic's history of epoch sealed at a clean
// shutdown, next being the seq its next message gets.
func HistorySeal(topic, epoch string, next uint64) broker.JournalRecord {
	return broker.JournalRecord{Op: broker.OpHistorySeal, Queue: topic, Epoch: epoch, HistorySeq: next}
}

// HistoryDrop is the record of topic's history of epoch dropped.
func HistoryDrop(topic, epoch string) broker.JournalRecord {
	return broker.JournalRecord{Op: broker.OpHistoryDrop, Queue: topic, Epoch: epoch}
}

// Expect fails t unless got and want are the same records in the same
// order, messages compared field by field (headers in order, bodies byte
// for byte).
func Expect(t testing.TB, got, want []broker.JournalRecord) {
	t.Helper()
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Fatalf("replayed %d records, want %d; first missing: %s", len(got), len(want), describe(want[i]))
		case i >= len(want):
			t.Fatalf("replayed %d records, want %d; first extra: %s", len(got), len(want), describe(got[i]))
		}
		if d := Diff(got[i], want[i]); d != "" {
			t.Fatalf("record %d: %s\n got  %s\n want %s", i, d, describe(got[i]), describe(want[i]))
		}
	}
}

// Diff describes the first difference between two records, or returns "".
func Diff(got, want broker.JournalRecord) string {
	switch {
	case got.Op != want.Op:
		return fmt.Sprintf("op %v, want %v", got.Op, want.Op)
	case got.Queue != want.Queue:
		return fmt.Sprintf("queue %q, want %q", got.Queue, want.Queue)
	case got.MessageID != want.MessageID:
		return fmt.Sprintf("message id %q, want %q", got.MessageID, want.MessageID)
	case got.Deliveries != want.Deliveries:
		return fmt.Sprintf("deliveries %d, want %d", got.Deliveries, want.Deliveries)
	case got.Epoch != want.Epoch || got.HistorySeq != want.HistorySeq || got.PublishedAt != want.PublishedAt:
		return fmt.Sprintf("offset %s-%d published %d, want %s-%d published %d",
			got.Epoch, got.HistorySeq, got.PublishedAt, want.Epoch, want.HistorySeq, want.PublishedAt)
	case got.Op != broker.OpEnqueue && got.Op != broker.OpHistoryAppend && got.Durable != want.Durable:
		return fmt.Sprintf("durable %+v, want %+v", got.Durable, want.Durable)
	case got.Op != broker.OpEnqueue && got.Op != broker.OpHistoryAppend:
		return ""
	case got.Message == nil:
		return "enqueue without a message"
	}
	g, w := got.Message, want.Message
	switch {
	case g.ID != w.ID:
		return fmt.Sprintf("message ID %q, want %q", g.ID, w.ID)
	case g.Destination != w.Destination:
		return fmt.Sprintf("destination %q, want %q", g.Destination, w.Destination)
	case len(g.Headers) != len(w.Headers):
		return fmt.Sprintf("%d headers, want %d", len(g.Headers), len(w.Headers))
	case !bytes.Equal(g.Body, w.Body):
		return fmt.Sprintf("body %d bytes %.32q, want %d bytes %.32q", len(g.Body), g.Body, len(w.Body), w.Body)
	case g.Persistent != w.Persistent:
		return fmt.Sprintf("persistent %v, want %v", g.Persistent, w.Persistent)
	case g.ExpiresAt != w.ExpiresAt:
		return fmt.Sprintf("expires %d, want %d", g.ExpiresAt, w.ExpiresAt)
	}
	for i := range g.Headers {
		if !bytes.Equal(g.Headers[i].Key, w.Headers[i].Key) || !bytes.Equal(g.Headers[i].Value, w.Headers[i].Value) {
			return fmt.Sprintf("header %d %q:%q, want %q:%q", i, g.Headers[i].Key, g.Headers[i].Value, w.Headers[i].Key, w.Headers[i].Value)
		}
	}
	return ""
}

func describe(r broker.JournalRecord) string {
	switch r.Op {
	case broker.OpEnqueue, broker.OpRemove, broker.OpDeliveries:
		if r.Deliveries != 0 {
			return fmt.Sprintf("%v %s %s (deliveries %d)", r.Op, r.Queue, r.MessageID, r.Deliveries)
		}
		return fmt.Sprintf("%v %s %s", r.Op, r.Queue, r.MessageID)
	case broker.OpHistoryAppend, broker.OpHistoryTrim, broker.OpHistorySeal, broker.OpHistoryDrop:
		return fmt.Sprintf("%v %s %s-%d %s", r.Op, r.Queue, r.Epoch, r.HistorySeq, r.MessageID)
	}
	return fmt.Sprintf("%v %s %+v", r.Op, r.Queue, r.Durable)
}
