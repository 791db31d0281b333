package broker

import (
	"strconv"
	"strings"

	"github.com/stompbox/stompbox/frames"
)

// ackTarget is one resolved ACK or NACK: which subscription and delivery.
type ackTarget struct {
	sub   *subscription
	ackID uint64
}

// handleAck acknowledges (ACK) or rejects (NACK) a delivery, now or at the
// COMMIT of its transaction.
func (s *Session) handleAck(f *frames.Frame) *stompError {
	target, err := s.resolveAck(f)
	if err != nil {
		if err.code == CodeUnknownMessage && s.settledBeforeResume(f) {
			return nil
		}
		return err
	}
	if tx, ok := f.Header("transaction"); ok {
		return s.addToTransaction(f, tx, txOp{cmd: f.Command, ack: target})
	}
	if err := s.applyAck(f.Command, target, false); err != nil {
		return err
	}
	s.receipt(f)
	return nil
}

// splitAckID parses a 1.2 ack id, our MESSAGE's ack header: "<subscription
// number>.<ack id>".
func splitAckID(id []byte) (num uint32, ackID uint64, ok bool) {
	numPart, ackPart, found := strings.Cut(string(id), ".")
	n, err1 := strconv.ParseUint(numPart, 10, 32)
	a, err2 := strconv.ParseUint(ackPart, 10, 64)
	if !found || err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uint32(n), a, true
}

// resolveAck finds the delivery an ACK/NACK names. STOMP 1.2 uses the id
// header (our MESSAGE's ack header, "<subscription number>.<ack id>"); 1.1
// uses subscription plus message-id; 1.0 message-id alone.
func (s *Session) resolveAck(f *frames.Frame) (ackTarget, *stompError) {
	unknown := func(what string) (ackTarget, *stompError) {
		return ackTarget{}, protocolErr(CodeUnknownMessage, "unknown message",
			f.Command.String()+" names "+what+", which is not an unacknowledged message of this connection.")
	}
	if id, ok := f.Header("id"); ok && s.version == frames.V12 {
		num, ackID, ok := splitAckID(id)
		if !ok {
			return unknown("id " + strconv.Quote(truncateString(string(id), 64)))
		}
		sub := s.subTab.byNum(num)
		if sub == nil || !sub.has(ackID) {
			return unknown("id " + string(id))
		}
		return ackTarget{sub: sub, ackID: ackID}, nil
	}
	msgID, ok := f.Header("message-id")
	if !ok {
		if s.version == frames.V12 {
			return ackTarget{}, protocolErr(CodeMissingHeader, "missing id header", f.Command.String()+" requires an id header.")
		}
		return ackTarget{}, protocolErr(CodeMissingHeader, "missing message-id header", f.Command.String()+" requires a message-id header.")
	}
	if subID, ok := f.Header("subscription"); ok {
		sub := s.subTab.get(subID)
		if sub == nil {
			return unknown("subscription " + strconv.Quote(truncateString(string(subID), 64)))
		}
		if ackID, ok := sub.findByMessageID(msgID); ok {
			return ackTarget{sub: sub, ackID: ackID}, nil
		}
		return unknown("message-id " + strconv.Quote(truncateString(string(msgID), 64)))
	}
	for _, sub := range s.subs {
		if ackID, ok := sub.findByMessageID(msgID); ok {
			return ackTarget{sub: sub, ackID: ackID}, nil
		}
	}
	return unknown("message-id " + strconv.Quote(truncateString(string(msgID), 64)))
}

// applyAck settles the deliveries an ACK or NACK covers. In client mode
// both are cumulative: "the client acknowledges all messages up to that
// point"; queue messages that were NACKed go back for redelivery, topic
// messages are dropped. journaled says the ACK's removals are already in
// the journal (a COMMIT appended them with the transaction's SENDs), so the
// queue must not journal them again.
func (s *Session) applyAck(cmd frames.Command, t ackTarget, journaled bool) *stompError {
	cumulative := t.sub.ackMode == ackClient
	x := s.extra()
	acked, found := t.sub.take(t.ackID, cumulative, x.acked[:0])
	x.acked = acked[:0] // kept, grown, for the next ACK
	if !found {
		return protocolErr(CodeUnknownMessage, "unknown message",
			cmd.String()+" names a message that was already acknowledged.")
	}
	if cmd == frames.CmdAck {
		s.b.stats.Acked.Add(uint64(len(acked)))
	} else {
		s.b.stats.Nacked.Add(uint64(len(acked)))
	}
	if q := t.sub.queue; q != nil {
		if cmd == frames.CmdAck {
			q.acked(acked, journaled)
		} else {
			q.nacked(acked)
		}
	}
	clear(acked)
	return nil
}
