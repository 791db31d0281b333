// Package persistence is stompbox's disk journal: File implements
// broker.Journal with segmented append-only files, CRC-checked records,
// group commit and compaction. The on-disk format, the sync policies and
// the recovery rules are in docs/persistence.md.
//
// Open recovers the directory; Replay hands the live records to the
// broker once, before it serves; Append records changes and returns when
// they are as durable as Config.Sync promises:
//
//	j, err := persistence.Open("/var/lib/stompbox/journal", persistence.Config{
//		Sync:     persistence.SyncAlways, // the default: acknowledged means fsynced
//		MaxBytes: 10 << 30,               // disk budget; 0 = none
//	})
//	if err != nil {
//		return err
//	}
//	defer j.Close()
//	err = j.Replay(func(r broker.JournalRecord) error { /* rebuild */ return nil })
//	...
//	err = j.Append(ctx, broker.JournalRecord{Op: broker.OpEnqueue, Queue: q, MessageID: m.ID, Message: m})
//
// Package persistence/journaltest holds the conformance suite that every
// broker.Journal must pass.
package persistence
