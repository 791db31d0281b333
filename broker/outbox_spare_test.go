package broker

import (
	"strings"
	"testing"
)

// TestOutboxSpares: the writer's cycle (push, take, hand the spares back)
// allocates nothing for small control frames nor for a steady flow of
// large batches, while a large frame (a CONNECTED with its limits) or a
// burst of entries followed by small batches does not stay with the
// connection: take lets such spares go.
func TestOutboxSpares(t *testing.T) {
	o := testOutbox(1 << 20)
	var spareEntries []outEntry
	var spareCtrl []byte
	var spareStarved []*queue
	cycle := func(frame string, n int) {
		for range n {
			if ok, _ := o.pushControl(func(dst []byte) []byte { return append(dst, frame...) }); !ok {
				t.Fatal("push refused")
			}
		}
		entries, ctrl, starved, _ := o.take(spareEntries, spareCtrl, spareStarved)
		if len(entries) != n || len(ctrl) != n*len(frame) {
			t.Fatalf("took %d entries, %d bytes; want %d, %d", len(entries), len(ctrl), n, n*len(frame))
		}
		clear(entries)
		spareEntries, spareCtrl, spareStarved = entries[:0], ctrl[:0], starved[:0]
	}
	receipt := "RECEIPT\nreceipt-id:r-1\n\n\x00"
	cycle(receipt, 1)
	cycle(receipt, 1)
	if allocs := testing.AllocsPerRun(100, func() { cycle(receipt, 1) }); allocs != 0 {
		t.Fatalf("steady RECEIPTs: %v allocs per cycle, want 0", allocs)
	}
	big := "CONNECTED\n" + strings.Repeat("x", 2*maxSpareCtrl) + "\n\n\x00"
	cycle(big, 1)     // the writer now holds the large buffer as its spare
	cycle(receipt, 1) // take lets that spare go
	if cap(o.ctrl) > maxSpareCtrl || cap(spareCtrl) > maxSpareCtrl {
		t.Fatalf("after a large frame and a RECEIPT: ctrl cap %d, spare cap %d; want <= %d", cap(o.ctrl), cap(spareCtrl), maxSpareCtrl)
	}
	cycle(receipt, 2*maxSpareEntries) // a burst of entries
	cycle(receipt, 1)
	if cap(o.entries) > maxSpareEntries || cap(spareEntries) > maxSpareEntries {
		t.Fatalf("after a burst: entries cap %d, spare cap %d; want <= %d", cap(o.entries), cap(spareEntries), maxSpareEntries)
	}
	// A steady flow of large batches (pipelined SENDs' RECEIPTs) keeps its
	// large buffers.
	const batch = 4 * maxSpareEntries
	cycle(receipt, batch)
	cycle(receipt, batch)
	if allocs := testing.AllocsPerRun(100, func() { cycle(receipt, batch) }); allocs != 0 {
		t.Fatalf("steady batches of %d RECEIPTs: %v allocs per cycle, want 0", batch, allocs)
	}
}
