package persistence

import (
	"errors"
	"fmt"
)

// Reading a segment's framing: its file header, and the records in it,
// found past damage (docs/persistence.md, "Corruption"). What a record
// holds is decoded in decode.go.

// errMalformed marks a record whose checksum matches but whose payload
// cannot be decoded; errNewerRecord one of a type this build does not
// know, which only a newer version can have written.
var (
	errMalformed   = errors.New("persistence: malformed record")
	errNewerRecord = fmt.Errorf("%w: a record type this build does not know", ErrUnsupportedVersion)
)

// headerState classifies a segment's file header.
type headerState uint8

const (
	headerOK headerState = iota
	// headerEmpty: shorter than a header, or zeros, with nothing but zeros
	// after: a crash between creating the file and writing its header.
	headerEmpty
	// headerDamaged: not a valid header (bad magic or checksum, version
	// 0); the records after it may still be good.
	headerDamaged
)

// segHeader is what a segment's file header says.
type segHeader struct {
	state   headerState
	id      uint64 // the segment number it names (headerOK)
	version uint16 // its format version (headerOK)
	why     string // what is wrong (headerDamaged)
}

// readHeader reads a segment's file header. The only error is a header
// that is valid but written by a newer version (a version or flag this
// build does not know): reading on could misread its records.
func readHeader(data []byte) (segHeader, error) {
	if len(data) < headerSize || allZero(data[:headerSize]) {
		if len(data) < headerSize || allZero(data) {
			return segHeader{state: headerEmpty}, nil
		}
		return segHeader{state: headerDamaged, why: "zero header before data"}, nil
	}
	h := data[:headerSize]
	var why string
	switch {
	case string(h[:8]) != magic:
		why = fmt.Sprintf("bad magic %q", h[:8])
	case checksum(h[:20]) != le.Uint32(h[20:]):
		why = "header checksum mismatch"
	}
	if why != "" {
		if dataEnd(data) <= headerSize {
			// Nothing after it: a header torn by a crash while the segment
			// was created (it is fsynced before any record goes in).
			return segHeader{state: headerEmpty, why: "torn header: " + why}, nil
		}
		return segHeader{state: headerDamaged, why: why}, nil
	}
	v, flags := le.Uint16(h[8:]), le.Uint16(h[10:])
	switch {
	case v == 0:
		return segHeader{state: headerDamaged, why: "version 0"}, nil
	case v > formatVersion:
		return segHeader{}, fmt.Errorf("%w: version %d (this build reads up to %d)", ErrUnsupportedVersion, v, formatVersion)
	case flags != 0:
		return segHeader{}, fmt.Errorf("%w: header flags %#x (this build knows none)", ErrUnsupportedVersion, flags)
	}
	return segHeader{state: headerOK, id: le.Uint64(h[12:]), version: v}, nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if le.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// dataEnd is the offset after the last non-zero byte of data.
func dataEnd(data []byte) int {
	n := len(data)
	for n >= 8 && le.Uint64(data[n-8:]) == 0 {
		n -= 8
	}
	for n > 0 && data[n-1] == 0 {
		n--
	}
	return n
}

// span is a range of a segment's bytes, [start, end).
type span struct{ start, end int }

func (s span) len() int { return s.end - s.start }

// scanResult is what scan found in one segment.
type scanResult struct {
	header  segHeader
	version uint16 // the framing used: the header's, or the one that fits a damaged header
	end     int    // offset just after the last good record (headerSize if none)
	records int    // good records
	// damaged are ranges holding no good record, each with a good record
	// after it: corruption, whatever segment it is in.
	damaged []span
	// tail is the range after the last good record that is not zeros,
	// with no good record after it: a torn write in the newest segment,
	// corruption in any other. Empty if there is none.
	tail span
	// newer is set when a record of a type this build does not know was
	// found (a newer version wrote it); scanning stopped there.
	newer error
}

// frame states of frameAt.
const (
	frameNone    = iota // no record starts here
	frameOK             // a good record
	frameBadBody        // version 3: the header is good, so the length is, but the data is not
)

// frameAt looks for a record at off in a segment framed as version v and
// returns its state and, unless frameNone, its whole length.
func frameAt(data []byte, off int, v uint16) (state, n int) {
	hdr := frameHeader
	if v < firstFramedVersion {
		hdr = legacyFrameHeader
	}
	if off+hdr > len(data) {
		return frameNone, 0
	}
	body := int(le.Uint32(data[off:]))
	if v >= firstFramedVersion && checksum(data[off:off+8]) != le.Uint32(data[off+8:]) {
		return frameNone, 0
	}
	if body < minFrameBody || body > len(data)-off-hdr {
		return frameNone, 0
	}
	if checksum(data[off+hdr:off+hdr+body]) != le.Uint32(data[off+4:]) {
		if v >= firstFramedVersion {
			return frameBadBody, hdr + body
		}
		return frameNone, 0
	}
	return frameOK, hdr + body
}

// resync finds the first offset from off (below limit) where a good
// record starts, or -1. Version 3 checks each offset's 8-byte header
// checksum first, so the search costs little more than reading the
// bytes; versions 1 and 2 have no header checksum, so the data checksum
// of every plausible length is tried.
func resync(data []byte, off, limit int, v uint16) int {
	for ; off < limit; off++ {
		if off+8 <= len(data) && le.Uint64(data[off:]) == 0 {
			continue
		}
		if v < firstFramedVersion && off+legacyFrameHeader < len(data) && !plausibleType(data[off+legacyFrameHeader]) {
			continue
		}
		if st, _ := frameAt(data, off, v); st == frameOK {
			return off
		}
	}
	return -1
}

// plausibleType reports whether t may be a record type, to skip most
// offsets of a legacy segment without a checksum.
func plausibleType(t byte) bool { return t >= 1 && t <= maxRecordType }

// maxRecordType is the highest record type this build reads.
const maxRecordType = typeHistoryDrop

// scan walks the records of one segment (data includes the file header)
// and calls fn for each good one: its checksums match and fn accepts it
// (fn returns errMalformed, or any error, to have it counted as damage
// instead, or an error wrapping errNewerRecord to stop the scan). Damage
// does not end the scan: the next good record after it is searched for,
// and only damage with nothing good after it is a tail. A segment whose
// file header is damaged is read with the framing that finds records in
// it.
func scan(data []byte, fn func(off int, typ byte, payload []byte) error) scanResult {
	h, err := readHeader(data)
	if err != nil {
		return scanResult{header: h, end: headerSize, newer: err}
	}
	v := h.version
	if h.state != headerOK {
		v = guessVersion(data)
	}
	res := scanFrames(data, v, fn)
	res.header = h
	return res
}

// guessVersion picks the framing under which a segment with a damaged
// header has its first good record.
func guessVersion(data []byte) uint16 {
	limit := dataEnd(data)
	cur, legacy := resync(data, headerSize, limit, formatVersion), resync(data, headerSize, limit, 2)
	if legacy >= 0 && (cur < 0 || legacy < cur) {
		return 2
	}
	return formatVersion
}

func scanFrames(data []byte, v uint16, fn func(off int, typ byte, payload []byte) error) scanResult {
	hdr := frameHeader
	if v < firstFramedVersion {
		hdr = legacyFrameHeader
	}
	res := scanResult{version: v, end: headerSize}
	limit := dataEnd(data)
	bad := -1 // start of the damage being crossed
	off := headerSize
	for off < limit {
		st, n := frameAt(data, off, v)
		if st == frameOK {
			body := data[off+hdr : off+n]
			if err := fn(off, body[0], body[1:]); errors.Is(err, errNewerRecord) {
				res.newer = fmt.Errorf("offset %d: %w", off, err)
				return res
			} else if err != nil {
				st = frameBadBody
			}
		}
		switch st {
		case frameOK:
			if bad >= 0 {
				res.damaged = append(res.damaged, span{bad, off})
				bad = -1
			}
			res.records++
			off += n
			res.end = off
			continue
		case frameBadBody:
			if bad < 0 {
				bad = off
			}
			off += n
			continue
		}
		if bad < 0 {
			bad = off
		}
		next := resync(data, off+1, limit, v)
		if next < 0 {
			break
		}
		off = next
	}
	if bad >= 0 {
		res.tail = span{bad, max(limit, off)}
	}
	return res
}
