package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence"
	jt "github.com/stompbox/stompbox/persistence/journaltest"
)

// journalTool runs `stompbox journal args...` and returns its exit status
// and output.
func journalTool(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := runJournal(args, nil, &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func writeTestJournal(t *testing.T, dir string, n int) []broker.JournalRecord {
	t.Helper()
	j, err := persistence.Open(dir, persistence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var recs []broker.JournalRecord
	for i := range n {
		r := jt.Enqueue("/queue/tool", jt.Message(i))
		if err := j.Append(context.Background(), r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	return recs
}

var dumpOffset = regexp.MustCompile(`(?m)^(\d{20}\.seg)@(\d+) seq=\d+ enqueue`)

// TestJournalToolCheckDumpRepair: check says healthy (0), a flipped bit
// in a record's length makes it say damaged (1) with the range, dump
// lists the records around it, repair keeps the bytes aside and rewrites
// the segment, after which check is healthy again and the broker's
// journal opens without reading around anything, with every good record.
func TestJournalToolCheckDumpRepair(t *testing.T) {
	dir := t.TempDir()
	recs := writeTestJournal(t, dir, 20)
	if code, out, errOut := journalTool(t, "check", "-journal-dir", dir); code != 0 || !strings.Contains(out, "healthy") {
		t.Fatalf("check of a healthy journal: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ := journalTool(t, "dump", "-journal-dir", dir)
	offs := dumpOffset.FindAllStringSubmatch(out, -1)
	if code != 0 || len(offs) != 20 {
		t.Fatalf("dump: exit %d, %d enqueues listed, want 20:\n%s", code, len(offs), out)
	}
	seg := filepath.Join(dir, offs[5][1])
	off, _ := strconv.Atoi(offs[5][2])
	data, _ := os.ReadFile(seg)
	binary.LittleEndian.PutUint32(data[off:], binary.LittleEndian.Uint32(data[off:])^1<<3)
	os.WriteFile(seg, data, 0o640)

	code, out, _ = journalTool(t, "check", "-journal-dir", dir)
	if code != 1 || !strings.Contains(out, "CORRUPT "+offs[5][2]+"-"+offs[6][2]) || !strings.Contains(out, "DAMAGED") {
		t.Fatalf("check of a damaged journal: exit %d, want 1 naming the range %s-%s:\n%s", code, offs[5][2], offs[6][2], out)
	}
	code, out, _ = journalTool(t, "dump", "-journal-dir", dir)
	if n := len(dumpOffset.FindAllString(out, -1)); code != 0 || n != 19 || !strings.Contains(out, "CORRUPT") {
		t.Fatalf("dump of a damaged journal: exit %d, %d enqueues, want 19 and the CORRUPT range:\n%s", code, n, out)
	}

	// Repair refuses while a broker holds the journal.
	j, err := persistence.Open(dir, persistence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := journalTool(t, "repair", "-journal-dir", dir); code != 2 || !strings.Contains(errOut, "in use") {
		t.Fatalf("repair of a journal in use: exit %d, want 2:\n%s", code, errOut)
	}
	j.Close()

	if code, out, errOut := journalTool(t, "repair", "-journal-dir", dir); code != 0 || !strings.Contains(out, "healthy") {
		t.Fatalf("repair: exit %d, want 0 and healthy:\n%s%s", code, out, errOut)
	}
	aside, _ := os.ReadFile(filepath.Join(dir, "damaged", offs[5][1]+"."+offs[5][2]+"-"+offs[6][2]))
	start, _ := strconv.Atoi(offs[5][2])
	end, _ := strconv.Atoi(offs[6][2])
	if !bytes.Equal(aside, data[start:end]) {
		t.Fatalf("the damaged record's bytes were not kept aside (%d bytes kept, want %d)", len(aside), end-start)
	}
	if code, out, _ := journalTool(t, "check", "-journal-dir", dir); code != 0 {
		t.Fatalf("check after repair: exit %d:\n%s", code, out)
	}
	j, err = persistence.Open(dir, persistence.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if d := j.Damage(); d != "" {
		t.Fatalf("the repaired journal still has damage: %s", d)
	}
	var got []broker.JournalRecord
	if err := j.Replay(func(r broker.JournalRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := append(append([]broker.JournalRecord{}, recs[:5]...), recs[6:]...)
	jt.Expect(t, got, want)
}

func TestJournalToolUsage(t *testing.T) {
	for _, args := range [][]string{
		nil, {"check"}, {"frobnicate", "-journal-dir", t.TempDir()},
		{"check", "-journal-dir", filepath.Join(t.TempDir(), "missing")},
	} {
		if code, _, _ := journalTool(t, args...); code != 2 {
			t.Errorf("stompbox journal %v: exit %d, want 2", args, code)
		}
	}
}

// TestJournalToolFindsConfiguredDir: without -journal-dir the tools take
// journal.dir as the broker reads it: from -config, $STOMPBOX_CONFIG or
// $STOMPBOX_JOURNAL_DIR.
func TestJournalToolFindsConfiguredDir(t *testing.T) {
	dir := t.TempDir()
	writeTestJournal(t, dir, 3)
	cfg := filepath.Join(t.TempDir(), "stompbox.yaml")
	if err := os.WriteFile(cfg, []byte("journal:\n  dir: "+dir+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		args, environ []string
	}{
		"flag":         {[]string{"check", "-config", cfg}, nil},
		"config env":   {[]string{"check"}, []string{"STOMPBOX_CONFIG=" + cfg}},
		"journal env":  {[]string{"check"}, []string{"STOMPBOX_JOURNAL_DIR=" + dir}},
		"explicit dir": {[]string{"check", "-journal-dir", dir}, []string{"STOMPBOX_JOURNAL_DIR=/nonexistent"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := runJournal(tc.args, tc.environ, &stdout, &stderr); code != 0 {
			t.Errorf("%s: exit %d, want 0 (healthy); stderr %s", name, code, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if code := runJournal([]string{"check", "-config", filepath.Join(t.TempDir(), "missing.yaml")}, nil, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "reading the configuration") {
		t.Errorf("a missing configuration file: exit %d, stderr %q; want 2 and why", code, stderr.String())
	}
}
