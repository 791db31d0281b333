package broker

import (
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// replayedLine is the header line of a replayed MESSAGE; deliverySize
// does not count it, so a replayed delivery adds it.
const replayedLine = "replayed:true\n"

// historyRequest is what a SUBSCRIBE asks of a topic's history.
type historyRequest struct {
	resume bool   // resume-after given
	epoch  string // resume-after's epoch
	seq    uint64 // resume-after's seq
	last   int    // history:<n>; 0 when absent
}

// parseHistoryRequest reads resume-after and history from a SUBSCRIBE;
// asked is false when it has neither.
func parseHistoryRequest(f *frames.Frame) (req historyRequest, asked bool, err *stompError) {
	after, hasAfter := f.Header("resume-after")
	last, hasLast := f.Header("history")
	switch {
	case hasAfter && hasLast:
		return req, false, protocolErr(CodeInvalidHeader, "resume-after and history together",
			"SUBSCRIBE may carry resume-after or history, not both: resume-after already replays everything after its offset.")
	case hasAfter:
		epoch, seq, ok := parseOffset(string(after))
		if !ok {
			return req, false, protocolErr(CodeInvalidHeader, "invalid resume-after header",
				"resume-after must be an offset as received in a MESSAGE's offset header (<epoch>-<seq>); got "+
					strconv.Quote(truncateString(string(after), 64))+".")
		}
		return historyRequest{resume: true, epoch: epoch, seq: seq}, true, nil
	case hasLast:
		n, perr := strconv.Atoi(string(last))
		if perr != nil || n < 0 || n > maxHistoryRequest || (len(last) > 1 && last[0] == '0') {
			return req, false, protocolErr(CodeInvalidHeader, "invalid history header",
				"history must be a whole number of messages from 0 to "+strconv.Itoa(maxHistoryRequest)+"; got "+
					strconv.Quote(truncateString(string(last), 32))+".")
		}
		return historyRequest{last: n}, true, nil
	}
	return req, false, nil
}

// subscribeTopic registers sub, a non-durable topic subscription, and
// serves what it asks of the topic's history. receipted is true when it
// queued the SUBSCRIBE's RECEIPT itself: a subscription to a topic with
// history gets its RECEIPT (with recovered and offset) before the replay
// and before any live message. join runs once sub is registered and
// before anything is queued for it (presence membership, which may still
// refuse the SUBSCRIBE: it then takes sub off its topic itself), so a
// refused SUBSCRIBE never gets a RECEIPT or a replay first.
func (s *Session) subscribeTopic(sub *subscription, f *frames.Frame, join func() *stompError) (receipted bool, err *stompError) {
	req, asked, err := parseHistoryRequest(f)
	if err != nil {
		return false, err
	}
	wild := isWildcard(sub.pattern)
	if asked && wild {
		return false, protocolErr(CodeInvalidHeader, "history on a wildcard subscription",
			"resume-after and history need an exact topic name: offsets are per topic, and a pattern spans many.")
	}
	var h *topicHistory
	if !wild {
		h = s.space.lockHistory(sub.pattern)
	}
	if h == nil {
		if err := s.space.addTopicSub(sub, s.countCreation); err != nil {
			return false, err
		}
		if err := join(); err != nil {
			return false, err
		}
		if asked {
			// A topic without history (no rule, or a rule removed since the
			// client got its offset) is subscribed live; the RECEIPT says
			// that nothing could be recovered.
			s.historyReceipt(f, true, false, "")
			return true, nil
		}
		return false, nil
	}
	now := s.b.nowMs()
	defer h.mu.Unlock()
	if err := s.space.addTopicSub(sub, s.countCreation); err != nil {
		return false, err
	}
	if err := join(); err != nil {
		return false, err
	}
	h.expire(now)
	s.space.journalHistoryTrim(h) // evictions by max_age of a topic read but not published to
	var start int
	var recovered bool
	var latest string
	if h.mirror != nil {
		var skip uint64
		start, recovered, skip = h.replayMirrored(req, asked)
		if skip != 0 {
			sub.mu.Lock()
			hs := sub.histLocked()
			hs.skipEpoch, hs.skipThrough = h.epoch, skip
			sub.mu.Unlock()
		}
		latest = h.latestMirrored(skip)
	} else {
		start, recovered = h.replayStart(req, asked)
		latest = h.token(h.next - 1)
	}
	start, fits := s.replayFits(h, sub, start)
	recovered = recovered && fits
	s.historyReceipt(f, asked, recovered, latest)
	for i := start; i < h.count; i++ {
		if m := h.entry(i).m; !m.expired(now) {
			sub.deliverTopicEntry(m, true)
		}
	}
	return true, nil
}

// replayStart is the index of the first retained entry a request replays
// (h.count: none) and whether everything it asks for is retained, on a
// single node. Caller holds mu.
func (h *topicHistory) replayStart(req historyRequest, asked bool) (int, bool) {
	switch {
	case !asked:
		return h.count, false
	case req.resume:
		if req.epoch != h.epoch || req.seq >= h.next {
			// Another lifetime, or an offset this one never assigned (its
			// tail was lost in a crash): deliver all that is retained.
			return 0, false
		}
		if req.seq+1 < h.first {
			return 0, false // evicted since
		}
		return h.after(req.seq), true
	}
	n := uint64(req.last)
	if published := h.next - 1; n > published {
		n = published
	}
	start := h.next - n
	if start < h.first {
		return 0, false
	}
	return h.after(start - 1), true
}

// replayFits moves start (an index of h's entries) forward until the
// replay fits what the subscription may take at once: what is free of its
// outbox and of its byte budget, less half of each, which stays for live
// messages (as queues may fill only half the outbox), and for client-ack
// subscriptions the unacknowledged bound. fits is false when it had to.
// Caller holds h.mu.
func (s *Session) replayFits(h *topicHistory, sub *subscription, start int) (int, bool) {
	outFree := int64(s.out.limit-s.out.used()) - int64(s.out.limit/2)
	budgetFree := s.budget.limit - s.budget.held() - s.budget.limit/2
	room := max(0, min(outFree, budgetFree))
	count := -1
	if sub.ackMode != ackAuto {
		count = sub.prefetch
		if count == 0 {
			count = s.b.cfg.MaxTopicUnacked
		}
	}
	var used int64
	i := h.count
	for i > start {
		m := h.entry(i - 1).m
		size := int64(deliverySize(m, sub) + len(replayedLine))
		if sub.ackMode != ackAuto {
			size += int64(m.size()) // charged to the budget until acknowledged
		}
		if used+size > room || count == 0 {
			return i, false
		}
		used += size
		count--
		i--
	}
	return start, true
}

// used is what the outbox holds now, in bytes.
func (o *outbox) used() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.bytes
}

// historyReceipt queues the RECEIPT of a SUBSCRIBE that concerns history,
// if it asked for one: recovered when the SUBSCRIBE asked for history, and
// the newest offset (none for a topic without history).
func (s *Session) historyReceipt(f *frames.Frame, asked, recovered bool, latest string) {
	r, ok := f.Header("receipt")
	if !ok {
		return
	}
	esc := s.escaping
	s.control(func(dst []byte) []byte {
		dst = frames.AppendCommand(dst, frames.CmdReceipt)
		dst = frames.AppendHeader(dst, esc, []byte("receipt-id"), r)
		if asked {
			dst = frames.AppendHeaderString(dst, esc, "recovered", strconv.FormatBool(recovered))
		}
		if latest != "" {
			dst = frames.AppendHeaderString(dst, esc, "offset", latest)
		}
		return frames.AppendEnd(dst)
	})
}
