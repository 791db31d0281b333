package broker

import (
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/stompbox/stompbox/frames"
)

// The checking half of FuzzSession: every Feed's result, every frame a
// session writes, and at the end the fate of every queue message.

// feedRaw feeds wire bytes to the slot's session, takes every session's
// output, and checks what Feed returned against what the session wrote.
func (r *fuzzRun) feedRaw(sl *fuzzSlot, wire []byte) {
	err := sl.c.s.Feed(wire)
	r.pollAll()
	if err != nil && !errors.Is(err, ErrSessionClosed) {
		r.t.Fatalf("Feed returned %v", err)
	}
	if sl.errorSeen && err == nil {
		r.t.Fatal("Feed returned nil after the session sent ERROR")
	}
	if err != nil {
		reason, closed := sl.c.s.CloseReason()
		if !closed || !sl.errorSeen && reason != CloseDisconnect {
			r.t.Fatalf("Feed returned ErrSessionClosed without ERROR or DISCONNECT (reason %v, closed %v)", reason, closed)
		}
		if !sl.c.closing {
			r.t.Fatal("session ended but AppendOutput never said closing")
		}
		sl.open, sl.ended = false, true
	}
}

// pollAll takes every live session's output, as their writers would.
func (r *fuzzRun) pollAll() {
	for _, sl := range r.slots {
		if sl.c != nil {
			r.poll(sl)
		}
	}
}

func (r *fuzzRun) poll(sl *fuzzSlot) {
	for _, f := range sl.c.poll() {
		if sl.errorSeen {
			r.t.Fatalf("%s after ERROR", f.Command)
		}
		switch f.Command {
		case frames.CmdMessage:
			r.message(sl, f, false)
		case frames.CmdReceipt:
			id := hdr(f, "receipt-id")
			if apply := sl.pending[id]; apply != nil {
				apply()
			}
			delete(sl.pending, id)
		case frames.CmdError:
			sl.errorSeen = true
			if hdr(f, "error-code") == "" || hdr(f, "message") == "" {
				r.t.Fatalf("ERROR without message or error-code: %q", headerLines(f))
			}
		default:
			r.t.Fatalf("unexpected %s", f.Command)
		}
	}
}

// message checks one MESSAGE and records it in the model; drain says it
// went to the final consumer.
func (r *fuzzRun) message(sl *fuzzSlot, f *frames.Frame, drain bool) {
	dest, msgID, subID := hdr(f, "destination"), hdr(f, "message-id"), hdr(f, "subscription")
	_, redelivered := f.Header("redelivered")
	st := r.bodies[string(f.Body)]
	if !strings.HasPrefix(dest, "/queue/") {
		key := sl.c.s.ID() + " " + subID + " " + msgID
		if r.seenTopic[key] || redelivered {
			r.t.Fatalf("topic message %s delivered twice to subscription %s", msgID, subID)
		}
		r.seenTopic[key] = true
		st = nil
	} else {
		key := dest + " " + msgID
		r.seenQueue[key]++
		n := r.seenQueue[key]
		if n == 1 && redelivered {
			r.t.Fatalf("first delivery of %s marked redelivered: %q", key, headerLines(f))
		}
		if n > 1 && (hdr(f, "redelivered") != "true" || hdr(f, "delivery-count") != strconv.Itoa(n)) {
			r.t.Fatalf("delivery %d of %s without redelivered:true and delivery-count:%d: %q", n, key, n, headerLines(f))
		}
	}
	if v, ok := f.Header("expires"); ok {
		if at, err := strconv.ParseInt(string(v), 10, 64); err == nil && at != 0 && r.now.UnixMilli() >= at {
			r.t.Fatalf("expired message delivered: %q at %d", headerLines(f), r.now.UnixMilli())
		}
	}
	if drain {
		if st != nil {
			st.drained++
		}
		return
	}
	if st != nil {
		sl.deliveredTo[st] = struct{}{}
		if sl.tainted {
			st.uncertain = true
		}
	}
	sub := sl.subs[subID]
	if sub == nil { // subscribed by garbage: the slot is tainted already
		if st != nil {
			st.uncertain = true
		}
		return
	}
	if sub.mode == ackAuto {
		if st != nil && !sl.tainted {
			st.settled++
		}
		return
	}
	ack := hdr(f, "ack")
	_, num, _ := strings.Cut(ack, ".")
	ackID, err := strconv.ParseUint(num, 10, 64)
	if err != nil {
		r.t.Fatalf("MESSAGE to a %s subscription with ack header %q", fuzzAckModes[sub.mode], ack)
	}
	sl.outstanding = append(sl.outstanding, &fuzzDelivery{sub: sub, ackID: ackID, ack: ack, msgID: msgID, body: st})
}

// finish releases every session, drains every queue with auto-ack
// consumers and checks the fate of every queue message.
func (r *fuzzRun) finish() {
	for _, sl := range r.slots {
		r.release(sl)
	}
	// One auto-ack consumer per queue left (ours, their DLQs, and any that
	// garbage sent to); empty queues without consumers are gone already.
	r.b.spaces[DefaultVirtualHost].mu.RLock()
	var names []string
	for name := range r.b.spaces[DefaultVirtualHost].queues {
		names = append(names, name)
	}
	r.b.spaces[DefaultVirtualHost].mu.RUnlock()
	slices.Sort(names)
	var drains []*fuzzSlot
	for i, q := range names {
		d := &fuzzSlot{c: newClient(r.t, r.b)}
		d.c.connect()
		d.c.mustSend(frames.CmdSubscribe, "", "destination:"+q, "id:d"+strconv.Itoa(i))
		drains = append(drains, d)
	}
	for _, d := range drains {
		for {
			fs := d.c.poll()
			if len(fs) == 0 {
				break
			}
			for _, f := range fs {
				if f.Command != frames.CmdMessage {
					r.t.Fatalf("drain got %s %q", f.Command, headerLines(f))
				}
				r.message(d, f, true)
			}
		}
	}
	for body, st := range r.bodies {
		total := st.settled + st.drained
		switch {
		case total > 1:
			r.t.Errorf("message %s settled %d times (%d acked, %d drained)", body, total, st.settled, st.drained)
		case total == 0 && st.confirmed && !st.mayExpire && !st.uncertain:
			r.t.Errorf("message %s was receipted and then lost", body)
		}
	}
	r.b.spaces[DefaultVirtualHost].mu.RLock()
	for name, q := range r.b.spaces[DefaultVirtualHost].queues {
		q.mu.Lock()
		if q.count != 0 || q.ready.Len() != 0 {
			r.t.Errorf("queue %s holds %d messages (%d ready) after the drain", name, q.count, q.ready.Len())
		}
		q.mu.Unlock()
	}
	r.b.spaces[DefaultVirtualHost].mu.RUnlock()
	for _, d := range drains {
		d.c.s.Release()
	}
	if n := r.b.queuedBytes.Load(); n != 0 {
		r.t.Errorf("broker counts %d queued bytes with every queue empty", n)
	}
	if n := r.b.sessionCount.Load(); n != 0 {
		r.t.Errorf("%d sessions left after all were released", n)
	}
	if r.t.Failed() {
		r.t.FailNow()
	}
}
