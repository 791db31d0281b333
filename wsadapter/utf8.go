package wsadapter

import "unicode/utf8"

// utf8Stream validates UTF-8 that arrives in pieces: a code point may be
// split across fragments and reads, so up to 3 bytes of an unfinished one
// are carried to the next piece.
type utf8Stream struct {
	carry [utf8.UTFMax]byte
	n     uint8 // bytes carried
}

// feed checks b, which continues the stream; false means invalid UTF-8.
func (u *utf8Stream) feed(b []byte) bool {
	for u.n > 0 && len(b) > 0 { // finish the carried code point first
		u.carry[u.n] = b[0]
		u.n++
		b = b[1:]
		if utf8.FullRune(u.carry[:u.n]) {
			ok := utf8.Valid(u.carry[:u.n])
			u.n = 0
			if !ok {
				return false
			}
		} else if u.n == utf8.UTFMax {
			return false
		}
	}
	if u.n > 0 {
		return true // b ended inside the carried code point
	}
	// Hold back an unfinished code point at the end.
	tail := len(b)
	for i := len(b) - 1; i >= 0 && i >= len(b)-utf8.UTFMax; i-- {
		if utf8.RuneStart(b[i]) {
			if !utf8.FullRune(b[i:]) {
				tail = i
			}
			break
		}
	}
	if !utf8.Valid(b[:tail]) {
		return false
	}
	u.n = uint8(copy(u.carry[:], b[tail:]))
	return true
}

// end reports whether the stream ended on a code point boundary, and resets.
func (u *utf8Stream) end() bool {
	ok := u.n == 0
	u.n = 0
	return ok
}
