package main

import (
	"errors"
	"testing"

	"github.com/stompbox/stompbox/frames"
)

func TestOrder(t *testing.T) {
	for _, tc := range []struct {
		name    string
		gapless bool
		seqs    []int64
		want    error // for the last seq; the others pass
	}{
		{"in order", true, []int64{0, 1, 2}, nil},
		{"gap", true, []int64{0, 2}, errLost},
		{"repeat", true, []int64{0, 1, 1}, errDuplicate},
		{"back", true, []int64{0, 1, 2, 0}, errDuplicate},
		{"subsequence", false, []int64{0, 3, 7}, nil},
		{"backwards in a subsequence", false, []int64{0, 3, 2}, errReordered},
	} {
		o := newOrder(1, tc.gapless, "consumer 0")
		for i, seq := range tc.seqs {
			err := o.check(stamp{seq: seq})
			want := error(nil)
			if i == len(tc.seqs)-1 {
				want = tc.want
			}
			if (want == nil) != (err == nil) || (want != nil && !errors.Is(err, want)) {
				t.Errorf("%s: seq %d: %v, want %v", tc.name, seq, err, want)
			}
		}
	}
}

func TestReadStamp(t *testing.T) {
	h := func(k, v string) frames.Header { return frames.Header{Key: []byte(k), Value: []byte(v)} }
	f := &frames.Frame{Command: frames.CmdMessage, Headers: []frames.Header{
		h("destination", "/queue/x"), h(hdrProducer, "2"), h(hdrSeq, "41"), h(hdrSentAt, "123456"),
	}}
	s, err := readStamp(f, 3)
	if err != nil || s != (stamp{producer: 2, seq: 41, sentAt: 123456}) {
		t.Fatalf("readStamp = %+v, %v", s, err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = readStamp(f, 3) }); n != 0 {
		t.Errorf("readStamp allocates %.0f times", n)
	}
	if _, err := readStamp(f, 2); !errors.Is(err, errBadMessage) {
		t.Errorf("producer 2 of 2: %v, want errBadMessage", err)
	}
	f.Headers = f.Headers[:3]
	if _, err := readStamp(f, 3); !errors.Is(err, errBadMessage) {
		t.Errorf("no send time: %v, want errBadMessage", err)
	}
	l := newLedger(1, 100)
	if err := l.mark(stamp{seq: 99}); err != nil {
		t.Fatal(err)
	}
	if err := l.mark(stamp{seq: 99}); !errors.Is(err, errDuplicate) {
		t.Errorf("second mark: %v, want errDuplicate", err)
	}
	if n, first := l.missing(); n != 99 || first != "producer 0 seq 0" {
		t.Errorf("missing = %d, %q; want 99 from seq 0", n, first)
	}
}
