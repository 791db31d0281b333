package broker

import (
	"github.com/stompbox/stompbox/frames"
	"unicode/utf8"
)

// Message is one published message. It is immutable once built: every
// delivery, to any number of subscribers, shares it and its body.
type Message struct {
	// ID is the message-id header of every delivery of this message.
	ID string
	// Destination is where it was sent, e.g. /queue/orders.
	Destination string
	// Headers are the SEND's headers that travel with the message
	// (destination first; framing, receipt and transaction headers dropped).
	Headers []frames.Header
	// Body is shared by all deliveries; never modify it.
	Body []byte
	// Persistent records persistent:true.
	Persistent bool
	// ExpiresAt is the expires header in ms since the epoch; 0 = never.
	ExpiresAt int64
	// DedupeID, in cluster mode, names a SEND to a queue that carried an
	// idempotency-key: the cluster stores one message per DedupeID within
	// the deduplication window, whichever node the repeats reach
	// (cluster_send.go). Empty otherwise.
	DedupeID string

	enc12 []byte // Headers escaped for STOMP 1.2, prepared once for all 1.2 subscribers
	// toCluster: a topic message published here was handed to the
	// cluster already (cluster_send.go); set by its session before any
	// delivery.
	toCluster bool
	// inHistory: a topic message published here was stored in the
	// cluster's history, whose mirror delivers it here too
	// (cluster_history.go): the SEND delivers it nowhere itself.
	inHistory bool
	// histSeq is the offset's seq of a message the cluster's history
	// delivers (0 otherwise): a subscription resuming after an offset
	// this node has not reached skips up to it (subscription.skipThrough).
	histSeq   uint64
	histEpoch string // the epoch of histSeq's history
	// textState (0 not known, 1 valid UTF-8, 2 not) says whether the
	// message's own bytes (id, headers, body) are valid UTF-8: found once
	// when the message is built (markText), before anyone else sees it,
	// and read by every subscriber's writer (isText).
	textState uint8
}

// size is what the message counts against queue and outbox limits.
func (m *Message) size() int { return len(m.Body) + len(m.enc12) + 64 }

func (m *Message) expired(nowMs int64) bool { return m.ExpiresAt != 0 && nowMs >= m.ExpiresAt }

// droppedOnDelivery are SEND headers that do not travel with a message:
// framing and per-frame headers, and headers the broker sets itself (a
// client must not spoof them).
func droppedOnDelivery(key []byte) bool {
	switch string(key) {
	case "content-length", "receipt", "transaction", "destination", "message-id",
		"subscription", "ack", "redelivered", "delivery-count", "offset", "replayed":
		return true
	}
	return false
}

// newMessage copies what it keeps of a borrowed SEND frame into one backing
// array: this is the one copy a published message costs. replyTo, when
// non-empty, replaces the reply-to header (temporary queue addresses).
func newMessage(f *frames.Frame, id, destination, replyTo string, persistent bool, expiresAt int64) *Message {
	size := len("destination") + len(destination) + len(f.Body)
	count := 1
	for _, h := range f.Headers {
		if droppedOnDelivery(h.Key) {
			continue
		}
		count++
		size += len(h.Key) + len(h.Value)
	}
	backing := make([]byte, 0, size+len(replyTo))
	own := func(b []byte) []byte {
		start := len(backing)
		backing = append(backing, b...)
		return backing[start:len(backing):len(backing)]
	}
	ownString := func(s string) []byte {
		start := len(backing)
		backing = append(backing, s...)
		return backing[start:len(backing):len(backing)]
	}
	m := &Message{ID: id, Destination: destination, Persistent: persistent, ExpiresAt: expiresAt,
		Headers: make([]frames.Header, 0, count)}
	m.Headers = append(m.Headers, frames.Header{Key: ownString("destination"), Value: ownString(destination)})
	seen := false
	for _, h := range f.Headers {
		if droppedOnDelivery(h.Key) {
			continue
		}
		value := h.Value
		if replyTo != "" && !seen && string(h.Key) == "reply-to" {
			seen = true
			m.Headers = append(m.Headers, frames.Header{Key: own(h.Key), Value: ownString(replyTo)})
			continue
		}
		m.Headers = append(m.Headers, frames.Header{Key: own(h.Key), Value: own(value)})
	}
	m.Body = own(f.Body)
	m.enc12 = appendHeaders12(make([]byte, 0, size+8*count), m.Headers)
	m.markText()
	return m
}

// withHeaders returns a copy of m under a new destination with extra headers
// in front, for dead-lettering; the body is shared.
func (m *Message) withHeaders(id, destination string, extra ...frames.Header) *Message {
	c := &Message{ID: id, Destination: destination, Body: m.Body, Persistent: m.Persistent, ExpiresAt: m.ExpiresAt}
	c.Headers = append(c.Headers, frames.Header{Key: []byte("destination"), Value: []byte(destination)})
	c.Headers = append(c.Headers, extra...)
	for _, h := range m.Headers {
		if string(h.Key) != "destination" {
			c.Headers = append(c.Headers, h)
		}
	}
	c.enc12 = appendHeaders12(nil, c.Headers)
	c.markText()
	return c
}

// appendHeaders12 escapes headers once for every STOMP 1.2 subscriber.
func appendHeaders12(dst []byte, headers []frames.Header) []byte {
	for _, h := range headers {
		dst = frames.AppendHeader(dst, frames.Escape12, h.Key, h.Value)
	}
	return dst
}

// isText reports whether m's id, headers and body are valid UTF-8, so a
// MESSAGE of it can go out as a WebSocket text message (the other parts a
// delivery adds are ASCII, or the subscription's header, checked apart).
// A message built by newMessage or RecoveredMessage knows (markText); any
// other is scanned.
func (m *Message) isText() bool {
	switch m.textState {
	case 1:
		return true
	case 2:
		return false
	}
	return m.scanText()
}

// markText finds once whether m is valid UTF-8 (isText). Its builder
// calls it before m is shared.
func (m *Message) markText() {
	m.textState = 2
	if m.scanText() {
		m.textState = 1
	}
}

func (m *Message) scanText() bool {
	ok := utf8.ValidString(m.ID) && utf8.Valid(m.Body)
	if m.enc12 != nil {
		return ok && utf8.Valid(m.enc12) // escaping adds ASCII only: valid iff the headers are
	}
	for _, h := range m.Headers {
		ok = ok && utf8.Valid(h.Key) && utf8.Valid(h.Value)
	}
	return ok
}
