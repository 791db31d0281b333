package cluster

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
)

// The payloads of a session handover (router_sessions.go), versioned as
// codec.go's messages are. A request:
//
//	version   1 byte (sessionCodecVersion)
//	token, user, vhost, version: each uvarint length + bytes
//
// A session state (sent in chunks; this is their concatenation):
//
//	version        1 byte (sessionCodecVersion)
//	client-id      uvarint length + bytes
//	next ack       uvarint
//	subscriptions  uvarint count, then per subscription: uvarint header
//	               count, then per header: uvarint key length + key,
//	               uvarint value length + value
//	messages       uvarint count, then per message: uvarint length + its
//	               encoding (appendMessage): each distinct message once,
//	               however many of the session's subscriptions it was for
//	deliveries     uvarint count, then per delivery: uvarint length +
//	               subscription id, uvarint message index, uvarint count
//
// Every count and length is checked against the bytes that remain before
// anything is allocated for it, so a forged one cannot make the decoder
// allocate more than the payload's size.

const sessionCodecVersion byte = 1

// maxDeliveryCount bounds a handed delivery's count (an int on every
// platform).
const maxDeliveryCount = math.MaxInt32

// appendBytes appends a length-prefixed field.
func appendBytes(b []byte, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// appendString appends a length-prefixed string.
func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// encodeSessionRequest encodes req.
func encodeSessionRequest(req broker.SessionRequest) []byte {
	b := make([]byte, 0, 1+4*binary.MaxVarintLen32+len(req.Token)+len(req.User)+len(req.VHost)+len(req.Version))
	b = append(b, sessionCodecVersion)
	for _, s := range []string{req.Token, req.User, req.VHost, req.Version} {
		b = appendString(b, s)
	}
	return b
}

// decodeSessionRequest rebuilds the request encoded in payload.
func decodeSessionRequest(payload []byte) (broker.SessionRequest, error) {
	if len(payload) < 1 || payload[0] != sessionCodecVersion {
		return broker.SessionRequest{}, fmt.Errorf("%w: session request version", errCodec)
	}
	d := decoder{b: payload, off: 1}
	req := broker.SessionRequest{
		Token:   string(d.bytes("token")),
		User:    string(d.bytes("user")),
		VHost:   string(d.bytes("vhost")),
		Version: string(d.bytes("version")),
	}
	if d.err == nil && d.off != len(payload) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return broker.SessionRequest{}, d.err
	}
	return req, nil
}

// encodeSessionState encodes st.
func encodeSessionState(st *broker.SessionState) []byte {
	b := []byte{sessionCodecVersion}
	b = appendString(b, st.ClientID)
	b = binary.AppendUvarint(b, st.NextAck)
	b = binary.AppendUvarint(b, uint64(len(st.Subscriptions)))
	for _, hs := range st.Subscriptions {
		b = binary.AppendUvarint(b, uint64(len(hs)))
		for _, h := range hs {
			b = appendBytes(b, h.Key)
			b = appendBytes(b, h.Value)
		}
	}
	// A topic message delivered to several subscriptions of the session
	// is one shared Message: sent once.
	index := make(map[*broker.Message]uint64, len(st.Deliveries))
	var msgs []*broker.Message
	for _, d := range st.Deliveries {
		if _, ok := index[d.Message]; !ok {
			index[d.Message] = uint64(len(msgs))
			msgs = append(msgs, d.Message)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(msgs)))
	var scratch []byte
	for _, m := range msgs {
		scratch = appendMessage(scratch[:0], m)
		b = appendBytes(b, scratch)
	}
	b = binary.AppendUvarint(b, uint64(len(st.Deliveries)))
	for _, d := range st.Deliveries {
		b = appendString(b, d.Subscription)
		b = binary.AppendUvarint(b, index[d.Message])
		b = binary.AppendUvarint(b, uint64(max(d.Count, 1)))
	}
	return b
}

// count reads a count of items that each take at least least bytes, and
// fails on one the remaining bytes cannot hold.
func (d *decoder) count(what string, least int) int {
	n := d.uvarint(what)
	if d.err == nil && n > uint64(len(d.b)-d.off)/uint64(least) {
		d.fail(what)
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

// decodeSessionState rebuilds the state encoded in payload. Its messages
// and headers keep slices of payload: the caller must not reuse it.
func decodeSessionState(payload []byte) (*broker.SessionState, error) {
	if len(payload) < 1 || payload[0] != sessionCodecVersion {
		return nil, fmt.Errorf("%w: session state version", errCodec)
	}
	d := decoder{b: payload, off: 1}
	st := &broker.SessionState{ClientID: string(d.bytes("client-id")), NextAck: d.uvarint("next ack")}
	// A subscription takes at least its header count (1 byte), a header
	// its two lengths, a message its length, a delivery its three fields.
	if n := d.count("subscription count", 1); n > 0 {
		st.Subscriptions = make([][]frames.Header, n)
		for i := range st.Subscriptions {
			hn := d.count("header count", 2)
			if hn == 0 {
				continue
			}
			hs := make([]frames.Header, hn)
			for j := range hs {
				hs[j].Key = d.bytes("header key")
				hs[j].Value = d.bytes("header value")
			}
			st.Subscriptions[i] = hs
		}
	}
	var msgs []*broker.Message
	if n := d.count("message count", 1); n > 0 {
		msgs = make([]*broker.Message, n)
		for i := range msgs {
			raw := d.bytes("message")
			if d.err != nil {
				break
			}
			m, err := decodeMessage(raw)
			if err != nil {
				return nil, fmt.Errorf("message %d: %w", i, err)
			}
			msgs[i] = m
		}
	}
	if n := d.count("delivery count", 3); n > 0 {
		st.Deliveries = make([]broker.HandedDelivery, n)
		for i := range st.Deliveries {
			sub := d.bytes("delivery subscription")
			idx := d.uvarint("delivery message")
			cnt := d.uvarint("delivery count")
			if d.err != nil {
				break
			}
			if idx >= uint64(len(msgs)) {
				d.fail("delivery message index")
				break
			}
			if cnt < 1 || cnt > maxDeliveryCount {
				d.fail("delivery count")
				break
			}
			st.Deliveries[i] = broker.HandedDelivery{Subscription: string(sub), Message: msgs[idx], Count: int(cnt)}
		}
	}
	if d.err == nil && d.off != len(payload) {
		d.fail("trailing bytes")
	}
	if d.err != nil {
		return nil, d.err
	}
	return st, nil
}
