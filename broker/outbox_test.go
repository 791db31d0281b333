package broker

import (
	"testing"

	"github.com/stompbox/stompbox/frames"
)

// testMessage is a Message of the given body size, built as SEND builds it.
func testMessage(id string, body int) *Message {
	f := &frames.Frame{Command: frames.CmdSend, Body: make([]byte, body),
		Headers: []frames.Header{{Key: []byte("destination"), Value: []byte("/topic/t")}}}
	return newMessage(f, id, "/topic/t", "", false, 0)
}

// testOutbox is an outbox of limit bytes with a budget that never binds.
func testOutbox(limit int) *outbox {
	o := &outbox{limit: limit}
	o.budget = &budget{limit: 1 << 40, out: o}
	return o
}

func TestOutboxLimits(t *testing.T) {
	m := testMessage("m", 100)
	size := m.size()
	ctrl := func(s string) func([]byte) []byte {
		return func(dst []byte) []byte { return append(dst, s...) }
	}

	t.Run("push fails past the limit", func(t *testing.T) {
		o := testOutbox(3 * size)
		for i := range 3 {
			if !o.pushMessage(outEntry{msg: m}, size, false) {
				t.Fatalf("push %d refused below the limit", i)
			}
		}
		if o.pushMessage(outEntry{msg: m}, size, false) {
			t.Fatal("push past the limit accepted")
		}
		if o.hasQueueRoom(1, nil) {
			t.Fatal("queue room at the limit")
		}
		if len(o.entries) != 3 || o.bytes != 3*size {
			t.Fatalf("%d entries, %d bytes; want 3, %d", len(o.entries), o.bytes, 3*size)
		}
		// Control frames are held to the limit too: nothing is queued.
		if pushed, full := o.pushControl(ctrl("RECEIPT")); pushed || !full || len(o.ctrl) != 0 {
			t.Fatalf("control frame past the limit: pushed %v, full %v, ctrl %q", pushed, full, o.ctrl)
		}
		entries, ctrlBytes, _, closing := o.take(nil, nil, nil)
		if len(entries) != 3 || len(ctrlBytes) != 0 || closing || o.budget.held() != 0 {
			t.Fatalf("take: %d entries, ctrl %q, closing %v", len(entries), ctrlBytes, closing)
		}
		if o.bytes != 0 || !o.pushMessage(outEntry{msg: m}, size, false) {
			t.Fatal("no room after the writer took the backlog")
		}
	})

	t.Run("queues fill half, starved queues are remembered once", func(t *testing.T) {
		o := testOutbox(2 * size)
		q := &queue{}
		if !o.hasQueueRoom(size, q) {
			t.Fatal("no room in an empty outbox")
		}
		o.pushMessage(outEntry{msg: m}, size, false)
		for range 2 { // asking twice must not remember q twice
			if o.hasQueueRoom(1, q) {
				t.Fatal("queue room past half the outbox")
			}
		}
		// The other half is for topic messages, which cannot wait.
		if !o.pushMessage(outEntry{msg: m}, size, false) {
			t.Fatal("topic push refused with half the outbox free")
		}
		_, _, starved, _ := o.take(nil, nil, nil)
		if len(starved) != 1 || starved[0] != q {
			t.Fatalf("starved = %v, want [q] once", starved)
		}
	})

	t.Run("close with discard drops the backlog", func(t *testing.T) {
		o := testOutbox(10 * size)
		o.pushMessage(outEntry{msg: m}, size, false)
		if pushed, _ := o.pushControl(ctrl("RECEIPT")); !pushed {
			t.Fatal("control frame refused below the limit")
		}
		if got, want := o.budget.held(), int64(size+len("RECEIPT")); got != want {
			t.Fatalf("budget holds %d, want %d", got, want)
		}
		if ok, _ := o.close(CloseSlowConsumer, true, ctrl("ERROR")); !ok {
			t.Fatal("close of an open outbox returned false")
		}
		if !o.closed.Load() {
			t.Fatal("closed flag not set")
		}
		entries, ctrlBytes, _, closing := o.take(nil, nil, nil)
		if len(entries) != 1 || entries[0].msg != nil || string(ctrlBytes[entries[0].ctrlStart:entries[0].ctrlEnd]) != "ERROR" || !closing {
			t.Fatalf("after discard: %d entries, ctrl %q, closing %v; want only the ERROR", len(entries), ctrlBytes, closing)
		}
		if held := o.budget.held(); held != 0 {
			t.Fatalf("budget holds %d after the writer took everything", held)
		}
		if r, ok := o.closeReason(); r != CloseSlowConsumer || !ok {
			t.Fatalf("reason %v %v", r, ok)
		}
	})

	t.Run("close without discard keeps the backlog before the final frame", func(t *testing.T) {
		o := testOutbox(10 * size)
		o.pushMessage(outEntry{msg: m}, size, false)
		o.close(CloseProtocolError, false, ctrl("ERROR"))
		entries, ctrlBytes, _, _ := o.take(nil, nil, nil)
		if len(entries) != 2 || entries[0].msg != m || string(ctrlBytes) != "ERROR" {
			t.Fatalf("got %d entries, ctrl %q", len(entries), ctrlBytes)
		}
	})

	t.Run("pushes after close fail", func(t *testing.T) {
		o := testOutbox(10 * size)
		o.close(CloseDisconnect, false, nil)
		if o.pushMessage(outEntry{msg: m}, size, false) || o.hasQueueRoom(1, nil) {
			t.Fatal("closed outbox accepted a push")
		}
		if pushed, full := o.pushControl(ctrl("RECEIPT")); pushed || full || o.hasQueueRoom(1, nil) {
			t.Fatal("closed outbox accepted a push")
		}
		if ok, _ := o.close(CloseProtocolError, false, ctrl("ERROR")); ok {
			t.Fatal("second close returned true")
		}
		if r, _ := o.closeReason(); r != CloseDisconnect {
			t.Fatalf("reason %v, want the first one", r)
		}
		entries, _, _, closing := o.take(nil, nil, nil)
		if len(entries) != 0 || !closing {
			t.Fatalf("%d entries, closing %v", len(entries), closing)
		}
	})
}
