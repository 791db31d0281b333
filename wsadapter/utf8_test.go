package wsadapter

import (
	"fmt"
	"testing"
	"unicode/utf8"
)

// feedPieces runs s through a fresh utf8Stream cut at the given offsets and
// reports whether every piece and the end were accepted.
func feedPieces(s string, cuts ...int) bool {
	var u utf8Stream
	start := 0
	for _, c := range append(cuts, len(s)) {
		if !u.feed([]byte(s[start:c])) {
			return false
		}
		start = c
	}
	return u.end()
}

// utf8Cases mixes 1-, 2-, 3- and 4-byte code points, and invalid input of
// every kind RFC 3629 rules out.
var utf8Cases = []struct {
	name  string
	s     string
	valid bool
}{
	{"ascii", "SEND\n\nbody", true},
	{"two-byte", "héllo", true},
	{"three-byte", "€", true},
	{"four-byte", "😀", true},
	{"mixed", "a€é😀z𝄞", true},
	{"empty", "", true},
	{"lone continuation", "a\x80b", false},
	{"0xff", "ab\xffcd", false},
	{"overlong slash", "\xc0\xaf", false},
	{"surrogate", "\xed\xa0\x80", false},
	{"above U+10FFFF", "\xf4\x90\x80\x80", false},
	{"bad continuation", "\xe2\x28\xa1", false},
	{"truncated three-byte at end", "ab\xe2\x82", false},
	{"truncated four-byte at end", "\xf0\x9f\x98", false},
	{"lead byte then ascii", "\xf0\x9fa\x80", false},
}

// Every split into two pieces gives the same answer as utf8.Valid.
func TestUTF8StreamTwoPieces(t *testing.T) {
	for _, tc := range utf8Cases {
		if utf8.ValidString(tc.s) != tc.valid {
			t.Fatalf("%s: case table is wrong", tc.name)
		}
		for i := 0; i <= len(tc.s); i++ {
			if got := feedPieces(tc.s, i); got != tc.valid {
				t.Errorf("%s: %q split at %d: accepted %v, want %v", tc.name, tc.s, i, got, tc.valid)
			}
		}
	}
}

// A code point may arrive in three or four pieces (one-byte fragments, or a
// short read in the middle of a fragment); every split into three pieces,
// and byte by byte, gives the same answer as utf8.Valid.
func TestUTF8StreamManyPieces(t *testing.T) {
	for _, tc := range utf8Cases {
		var failed []string
		for i := 1; i < len(tc.s); i++ { // non-empty pieces, as Conn.Read feeds them
			for j := i + 1; j < len(tc.s); j++ {
				if got := feedPieces(tc.s, i, j); got != tc.valid {
					failed = append(failed, fmt.Sprintf("%q|%q|%q", tc.s[:i], tc.s[i:j], tc.s[j:]))
				}
			}
		}
		if len(failed) > 0 {
			t.Errorf("%s: %d three-piece splits answered %v, want %v; e.g. %s",
				tc.name, len(failed), !tc.valid, tc.valid, failed[0])
		}
		cuts := make([]int, 0, len(tc.s))
		for i := 1; i < len(tc.s); i++ {
			cuts = append(cuts, i)
		}
		if got := feedPieces(tc.s, cuts...); got != tc.valid {
			t.Errorf("%s: %q byte by byte: accepted %v, want %v", tc.name, tc.s, got, tc.valid)
		}
	}
}

// end resets the stream: what one message left unfinished does not leak
// into the next.
func TestUTF8StreamEndResets(t *testing.T) {
	var u utf8Stream
	if !u.feed([]byte("a\xe2\x82")) {
		t.Fatal("an unfinished code point at the end of a piece was refused")
	}
	if u.end() {
		t.Fatal("end accepted a message ending inside a code point")
	}
	if !u.feed([]byte("ok")) || !u.end() {
		t.Fatal("the next message was judged by the previous one's leftovers")
	}
}
