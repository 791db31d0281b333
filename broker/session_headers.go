package broker

import (
	"strconv"

	"github.com/stompbox/stompbox/frames"
)

// Header hygiene of client frames, checked before a frame is handled:
//
//   - No header name or value may hold a NUL or another C0 control byte,
//     checked as decoded: a raw NUL relayed in a MESSAGE lets a client that
//     splits frames on NUL see a forged frame. TAB is allowed, and so are
//     LF and CR: they can only arrive escaped (\n, \r; a raw one ends the
//     header line), they are what STOMP 1.1 and 1.2 escaping exists for,
//     and the encoder never writes them raw inside a header: it escapes
//     them again for 1.1 and 1.2 subscribers and writes a space for 1.0
//     ones, which have no escapes (frames.AppendHeader). STOMP 1.2's
//     grammar allows every other octet too, so the frames codec accepts
//     them; refusing them is the broker's policy.
//   - Ids the broker keeps and repeats (the subscription id, copied into
//     every MESSAGE of the subscription; receipt ids; transaction ids) are
//     at most Config.MaxIDLength bytes.

// headersValid reports whether f passes both rules; it does not allocate,
// as it runs for every frame.
func (s *Session) headersValid(f *frames.Frame) bool {
	limit := s.b.cfg.MaxIDLength
	for _, h := range f.Headers {
		if hasControl(h.Key) || hasControl(h.Value) {
			return false
		}
		if len(h.Value) > limit && isIDHeader(f.Command, h.Key) {
			return false
		}
	}
	return true
}

// headerErr is the ERROR for the first header of f that headersValid
// refuses. Neither rule is retryable: the same frame fails again.
func (s *Session) headerErr(f *frames.Frame) *stompError {
	limit := s.b.cfg.MaxIDLength
	for _, h := range f.Headers {
		name := strconv.Quote(truncateString(string(h.Key), 64))
		if hasControl(h.Key) || hasControl(h.Value) {
			return protocolErr(CodeInvalidHeader, "control character in header",
				"Header "+name+" holds a NUL or another control character (only TAB, and LF and CR written as the \\n and \\r escapes, are allowed).")
		}
		if len(h.Value) > limit && isIDHeader(f.Command, h.Key) {
			return protocolErr(CodeInvalidHeader, "id too long",
				"Header "+name+" is "+strconv.Itoa(len(h.Value))+" bytes; ids are at most "+strconv.Itoa(limit)+" bytes.")
		}
	}
	return protocolErr(CodeInvalidHeader, "invalid header", "A header of this frame is not accepted.")
}

// isIDHeader reports whether key names an id the broker keeps for the
// connection: receipt and transaction on any frame, id on SUBSCRIBE and
// UNSUBSCRIBE.
func isIDHeader(cmd frames.Command, key []byte) bool {
	switch string(key) {
	case "receipt", "transaction":
		return true
	case "id":
		return cmd == frames.CmdSubscribe || cmd == frames.CmdUnsubscribe
	}
	return false
}

// hasControl reports whether b holds a C0 control byte (below 0x20) other
// than TAB, LF and CR.
func hasControl(b []byte) bool {
	for _, c := range b {
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' {
			return true
		}
	}
	return false
}
