package persistence

import (
	"testing"

	"github.com/stompbox/stompbox/broker"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// goldenHistoryDir holds the fixture of the topic history records:
// history-append (8) and history-trim (9), alone and inside batches.
const goldenHistoryDir = "testdata/golden-history"

// chat is message i retained in the history of /topic/chat, epoch 0a1b2c3d.
func chat(i int) broker.JournalRecord {
	return jt.HistoryAppend("/topic/chat", "0a1b2c3d", uint64(i), goldenMessage(i))
}

// goldenHistoryAppends is the history of the fixture, one Append each.
func goldenHistoryAppends() [][]broker.JournalRecord {
	return [][]broker.JournalRecord{
		{orders(4)}, // keeps the first segment live
		{chat(1)},
		{chat(2)},
		{chat(3), jt.HistoryTrim("/topic/chat", "0a1b2c3d", 1)}, // a batch: append, trim
		{jt.HistoryAppend("/vhost/tenant/topic/news", "ffff", 7, goldenMessage(7))},
		{chat(5)},
		{jt.HistoryTrim("/topic/chat", "0a1b2c3d", 2)},
	}
}

// goldenHistoryLive is what replaying that fixture must give.
func goldenHistoryLive() []broker.JournalRecord {
	return []broker.JournalRecord{
		orders(4),
		chat(3),
		jt.HistoryAppend("/vhost/tenant/topic/news", "ffff", 7, goldenMessage(7)),
		chat(5),
		jt.HistoryTrim("/topic/chat", "0a1b2c3d", 2),
	}
}

// TestGoldenHistoryWrite is TestGoldenWrite for the history records.
func TestGoldenHistoryWrite(t *testing.T) { checkGolden(t, goldenHistoryDir, goldenHistoryAppends()) }

// TestGoldenHistoryReplay is TestGoldenReplay for the history records.
func TestGoldenHistoryReplay(t *testing.T) {
	f := openGolden(t, goldenHistoryDir)
	jt.Expect(t, replay(t, f), goldenHistoryLive())
	if n := f.CorruptRecords(); n != 0 {
		t.Fatalf("%d corrupt records in the fixture", n)
	}
}

// goldenSealDir holds the fixture of the history seal (10) and drop (11)
// records, alone and inside batches.
const goldenSealDir = "testdata/golden-seal"

// goldenSealAppends is the history of that fixture, one Append each.
func goldenSealAppends() [][]broker.JournalRecord {
	return [][]broker.JournalRecord{
		{orders(4)}, // keeps the first segment live
		{chat(1)},
		{chat(2)},
		{jt.HistoryTrim("/topic/chat", "0a1b2c3d", 1), jt.HistorySeal("/topic/chat", "0a1b2c3d", 3)}, // a batch: trim, seal
		{jt.HistoryAppend("/vhost/tenant/topic/news", "ffff", 7, goldenMessage(7))},
		{jt.HistoryAppend("/topic/gone", "0c", 1, goldenMessage(8))},
		{jt.HistoryDrop("/topic/gone", "0c")},
		{jt.HistorySeal("/vhost/tenant/topic/news", "ffff", 8), jt.HistoryDrop("/topic/none", "01")}, // a batch: seal, drop
	}
}

// goldenSealLive is what replaying that fixture must give.
func goldenSealLive() []broker.JournalRecord {
	return []broker.JournalRecord{
		orders(4),
		chat(2),
		jt.HistoryTrim("/topic/chat", "0a1b2c3d", 1),
		jt.HistorySeal("/topic/chat", "0a1b2c3d", 3),
		jt.HistoryAppend("/vhost/tenant/topic/news", "ffff", 7, goldenMessage(7)),
		jt.HistorySeal("/vhost/tenant/topic/news", "ffff", 8),
	}
}

// TestGoldenSealWrite is TestGoldenWrite for the seal and drop records.
func TestGoldenSealWrite(t *testing.T) { checkGolden(t, goldenSealDir, goldenSealAppends()) }

// TestGoldenSealReplay is TestGoldenReplay for the seal and drop records.
func TestGoldenSealReplay(t *testing.T) {
	f := openGolden(t, goldenSealDir)
	jt.Expect(t, replay(t, f), goldenSealLive())
	if n := f.CorruptRecords(); n != 0 {
		t.Fatalf("%d corrupt records in the fixture", n)
	}
}
