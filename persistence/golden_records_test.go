package persistence

import (
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// goldenRecordsDir holds the fixture of the record types added after the
// history of goldenDir was written: deliveries (6) and multi-enqueue (7),
// alone and inside batches.
const goldenRecordsDir = "testdata/golden-records"

// fanned is message i to both durable subscriptions of the fixture: one
// Message, so encode stores it once.
func fanned(i int) []broker.JournalRecord {
	m := goldenMessage(i)
	return []broker.JournalRecord{jt.Enqueue(goldenD1.Queue, m), jt.Enqueue(goldenD2.Queue, m)}
}

// goldenRecordsAppends is the history of the fixture, one Append each.
func goldenRecordsAppends() [][]broker.JournalRecord {
	f1, f3, f5 := fanned(1), fanned(3), fanned(5)
	return [][]broker.JournalRecord{
		{goldenD1, goldenD2},
		f1, // a multi-enqueue record
		append([]broker.JournalRecord{orders(2)}, f3...),       // a batch: enqueue, multi-enqueue
		{jt.Deliveries(orders(2), 2)},                          // a deliveries record
		{jt.Deliveries(f1[1], 1), jt.Deliveries(orders(2), 3)}, // a batch of them
		{jt.Remove(f1[0])},                                     // one queue of the multi-enqueue
		append(f5, jt.Remove(f3[1])),                           // a batch: multi-enqueue, remove
		{jt.Deliveries(f3[1], 4)},                              // of a removed message: counts nothing
	}
}

// goldenRecordsLive is what replaying that fixture must give.
func goldenRecordsLive() []broker.JournalRecord {
	f1, f3, f5 := fanned(1), fanned(3), fanned(5)
	o2 := orders(2)
	o2.Deliveries = 3
	f1[1].Deliveries = 1
	return []broker.JournalRecord{goldenD1, goldenD2, f1[1], o2, f3[0], f5[0], f5[1]}
}

// TestGoldenRecordsWrite is TestGoldenWrite for the newer record types.
func TestGoldenRecordsWrite(t *testing.T) { checkGolden(t, goldenRecordsDir, goldenRecordsAppends()) }

// TestGoldenRecordsReplay is TestGoldenReplay for the newer record types:
// counts come back with their enqueues, a fan-out's enqueues share one
// Message.
func TestGoldenRecordsReplay(t *testing.T) {
	f := openGolden(t, goldenRecordsDir)
	got := replay(t, f)
	jt.Expect(t, got, goldenRecordsLive())
	if got[5].Message != got[6].Message {
		t.Fatal("the enqueues of one multi-enqueue replay with different Messages")
	}
	if n := f.CorruptRecords(); n != 0 {
		t.Fatalf("%d corrupt records in the fixture", n)
	}
}
