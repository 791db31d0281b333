package persistence

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/stompbox/stompbox/broker"
)

// Range is a byte range of a segment file, [Start, End).
type Range struct{ Start, End int64 }

func (r Range) String() string { return fmt.Sprintf("%d-%d", r.Start, r.End) }

// SegmentReport is what Check found in one segment file.
type SegmentReport struct {
	Name    string // file name in the journal directory
	Size    int64  // file size
	Version uint16 // format version it is read as
	Records int    // good records
	// Header says what is wrong with a damaged file header ("" if good).
	Header string
	// NotSegment: no good header and no good record; recovery skips it.
	NotSegment bool
	// Damaged are corrupt ranges with good records after them.
	Damaged []Range
	// Tail is unreadable data after the last good record: a torn write
	// in the newest segment (Open cuts it, after keeping it aside),
	// corruption in any other. Empty if none.
	Tail Range
	// Newer is set when a newer version of stompbox wrote the segment.
	Newer string
}

// Report is what Check found in a journal directory.
type Report struct {
	Dir      string
	Segments []SegmentReport
}

// Healthy reports whether the journal has no damage: no corrupt range,
// damaged header, foreign file or sealed segment with a bad tail. The
// torn tail of the newest segment, which a crash during a write leaves
// and Open deals with, does not count; nor does a segment a newer
// version wrote (Check's error says so).
func (r Report) Healthy() bool {
	for i, s := range r.Segments {
		torn := s.Tail.End > s.Tail.Start && i != r.newest()
		if s.Header != "" || s.NotSegment || len(s.Damaged) > 0 || torn {
			return false
		}
	}
	return true
}

// newest is the index of the newest segment with data, or -1.
func (r Report) newest() int {
	n := -1
	for i, s := range r.Segments {
		if !s.NotSegment && (s.Records > 0 || s.Tail.End > s.Tail.Start) {
			n = i
		}
	}
	return n
}

// WriteTo writes the report for a person, one line per segment.
func (r Report) WriteTo(w io.Writer) (int64, error) {
	var b strings.Builder
	newest := r.newest()
	for i, s := range r.Segments {
		fmt.Fprintf(&b, "%s: %d bytes, version %d, %d records", s.Name, s.Size, s.Version, s.Records)
		switch {
		case s.Newer != "":
			fmt.Fprintf(&b, ", WRITTEN BY A NEWER VERSION: %s", s.Newer)
		case s.NotSegment:
			b.WriteString(", NOT A SEGMENT (skipped by recovery)")
		}
		if s.Header != "" && !s.NotSegment {
			fmt.Fprintf(&b, ", DAMAGED HEADER (%s)", s.Header)
		}
		for _, d := range s.Damaged {
			fmt.Fprintf(&b, ", CORRUPT %s", d)
		}
		if s.Tail.End > s.Tail.Start {
			if i == newest {
				fmt.Fprintf(&b, ", torn tail %s (a crash during a write; Open cuts it)", s.Tail)
			} else {
				fmt.Fprintf(&b, ", CORRUPT TAIL %s", s.Tail)
			}
		}
		b.WriteByte('\n')
	}
	if r.Healthy() {
		fmt.Fprintf(&b, "%s: healthy (%d segments)\n", r.Dir, len(r.Segments))
	} else {
		fmt.Fprintf(&b, "%s: DAMAGED (stompbox journal repair keeps the damaged bytes aside and rewrites the segments)\n", r.Dir)
	}
	n, err := io.WriteString(w, b.String())
	return int64(n), err
}

// inspected is one segment file as Check read it.
type inspected struct {
	id   uint64
	data []byte
	rep  SegmentReport
	res  scanResult
}

// inspect reads every segment of dir with the rules recovery uses and
// calls each for every good record, in file order.
func inspect(fsys fileSystem, dir string, each func(seg *inspected, off int, typ byte, payload []byte, vs []view)) ([]*inspected, error) {
	ids, err := segmentIDs(fsys, dir)
	if err != nil {
		return nil, err
	}
	var out []*inspected
	for _, id := range ids {
		path := filepath.Join(dir, segmentName(id))
		data, err := readFile(fsys, path)
		if err != nil {
			return nil, err
		}
		seg := &inspected{id: id, data: data}
		seg.res = scan(data, func(off int, typ byte, payload []byte) error {
			vs, err := views(typ, payload)
			if err != nil {
				return err
			}
			if each != nil {
				each(seg, off, typ, payload, vs)
			}
			return nil
		})
		res := &seg.res
		seg.rep = SegmentReport{Name: segmentName(id), Size: int64(len(data)), Version: res.version, Records: res.records,
			Tail: Range{int64(res.tail.start), int64(res.tail.end)}}
		if res.newer != nil {
			seg.rep.Newer = res.newer.Error()
		}
		switch res.header.state {
		case headerEmpty:
			seg.rep.Version = 0
		case headerDamaged:
			seg.rep.Header = res.header.why
			seg.rep.NotSegment = res.records == 0
		}
		for _, d := range res.damaged {
			seg.rep.Damaged = append(seg.rep.Damaged, Range{int64(d.start), int64(d.end)})
		}
		out = append(out, seg)
	}
	return out, nil
}

// ErrNewerJournal is returned (wrapped) by Check, Dump and Repair when a
// newer version of stompbox wrote part of the journal.
var ErrNewerJournal = errors.New("persistence: written by a newer version of stompbox")

// Check reads every segment of the journal in dir, as recovery would,
// and reports what is healthy and what is damaged. It only reads: it
// does not take the journal's lock, so it may run beside a broker (whose
// newest segment may then show a write in progress as a torn tail).
func Check(dir string) (Report, error) { return check(osFS{}, dir) }

func check(fsys fileSystem, dir string) (Report, error) {
	segs, err := inspect(fsys, dir, nil)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Dir: dir}
	var newer error
	for _, s := range segs {
		rep.Segments = append(rep.Segments, s.rep)
		if s.res.newer != nil && newer == nil {
			newer = fmt.Errorf("%w: %s: %w", ErrNewerJournal, s.rep.Name, s.res.newer)
		}
	}
	return rep, newer
}

// Dump writes one line per record of the journal in dir, in file order:
// segment, offset, sequence number, operation, queue and what else the
// record names (message id and body size, or the durable subscription),
// and one line per damaged range. It only reads.
func Dump(dir string, w io.Writer) error {
	var werr error
	line := func(format string, args ...any) {
		if werr == nil {
			_, werr = fmt.Fprintf(w, format, args...)
		}
	}
	segs, err := inspect(osFS{}, dir, func(seg *inspected, off int, _ byte, _ []byte, vs []view) {
		for i := range vs {
			v := &vs[i]
			where := segmentName(seg.id) + "@" + strconv.Itoa(off)
			if len(vs) > 1 {
				where += "#" + strconv.Itoa(i)
			}
			switch v.op {
			case broker.OpEnqueue:
				line("%s seq=%d %v queue=%q id=%q headers=%d body=%dB persistent=%v expires=%d\n",
					where, v.seq, v.op, v.queue, v.id, v.nhdr, len(v.body), v.persistent, v.expiresAt)
			case broker.OpRemove:
				line("%s seq=%d %v queue=%q id=%q\n", where, v.seq, v.op, v.queue, v.id)
			case broker.OpDeliveries:
				line("%s seq=%d %v queue=%q id=%q deliveries=%d\n", where, v.seq, v.op, v.queue, v.id, v.deliveries)
			case broker.OpHistoryAppend:
				line("%s seq=%d %v topic=%q offset=%s-%d id=%q headers=%d body=%dB published=%d expires=%d\n",
					where, v.seq, v.op, v.queue, v.epoch, v.hseq, v.id, v.nhdr, len(v.body), v.publishedAt, v.expiresAt)
			case broker.OpHistoryTrim:
				line("%s seq=%d %v topic=%q through=%s-%d\n", where, v.seq, v.op, v.queue, v.epoch, v.hseq)
			case broker.OpHistorySeal:
				line("%s seq=%d %v topic=%q epoch=%s next=%d\n", where, v.seq, v.op, v.queue, v.epoch, v.hseq)
			case broker.OpHistoryDrop:
				line("%s seq=%d %v topic=%q epoch=%s\n", where, v.seq, v.op, v.queue, v.epoch)
			default:
				line("%s seq=%d %v queue=%q user=%q client-id=%q name=%q topic=%q owned=%v\n",
					where, v.seq, v.op, v.queue, v.user, v.clientID, v.name, v.topic, !v.unowned)
			}
		}
	})
	if err != nil {
		return err
	}
	for _, s := range segs {
		for _, d := range s.rep.Damaged {
			line("%s@%s CORRUPT %d bytes\n", s.rep.Name, d, d.End-d.Start)
		}
		if s.rep.Tail.End > s.rep.Tail.Start {
			line("%s@%s UNREADABLE TAIL %d bytes\n", s.rep.Name, s.rep.Tail, s.rep.Tail.End-s.rep.Tail.Start)
		}
		if s.res.newer != nil {
			return fmt.Errorf("%w: %s: %w", ErrNewerJournal, s.rep.Name, s.res.newer)
		}
	}
	return werr
}
