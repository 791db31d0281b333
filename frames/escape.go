package frames

import "fmt"

// Escaping is how header keys and values are escaped on the wire, which
// depends on the protocol version and the command.
type Escaping uint8

// The escapings of STOMP 1.0, 1.1 and 1.2.
const (
	// EscapeNone: STOMP 1.0, and the CONNECT, STOMP and CONNECTED frames of
	// every version ("CONNECT and CONNECTED frames do not escape the carriage
	// return, line feed or colon octets in order to remain backward
	// compatible with STOMP 1.0"). A backslash is an ordinary byte.
	EscapeNone Escaping = iota
	// Escape11: STOMP 1.1 defines \n, \c and \\.
	Escape11
	// Escape12: STOMP 1.2 adds \r.
	Escape12
)

// EscapingFor returns the escaping of frames with command c in version v.
func EscapingFor(v Version, c Command) Escaping {
	if c == CmdConnect || c == CmdStomp || c == CmdConnected {
		return EscapeNone
	}
	switch v {
	case V11:
		return Escape11
	case V12:
		return Escape12
	}
	return EscapeNone
}

// unescapeInPlace decodes the escape sequences of b into b itself (decoding
// only shrinks) and returns the decoded length. STOMP 1.2: "Undefined escape
// sequences such as \t MUST be treated as a fatal protocol error."
func unescapeInPlace(b []byte, esc Escaping) (int, error) {
	if esc == EscapeNone {
		return len(b), nil
	}
	w := 0
	for r := 0; r < len(b); r++ {
		c := b[r]
		if c == '\\' {
			r++
			if r == len(b) {
				return 0, fmt.Errorf("%w: header ends with a lone backslash", ErrBadEscape)
			}
			switch b[r] {
			case 'n':
				c = '\n'
			case 'c':
				c = ':'
			case '\\':
				c = '\\'
			case 'r':
				if esc != Escape12 {
					return 0, fmt.Errorf(`%w: \r is not defined before STOMP 1.2`, ErrBadEscape)
				}
				c = '\r'
			default:
				return 0, fmt.Errorf(`%w: \%q`, ErrBadEscape, b[r])
			}
		}
		b[w] = c
		w++
	}
	return w, nil
}

// escapeClass says which bytes need attention when encoding a header.
var escapeClass = [256]bool{'\\': true, '\n': true, '\r': true, ':': true}

// appendEscaped appends s escaped with esc. Bytes that cannot be represented
// in an escaping without them are replaced so the frame stays well-formed: a
// line feed becomes a space, a colon in a key becomes '_', and a carriage
// return ending a value (it would read as part of the EOL) becomes a space.
func appendEscaped[T ~string | ~[]byte](dst []byte, esc Escaping, s T, isKey bool) []byte {
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !escapeClass[c] {
			continue
		}
		var rep string
		switch {
		case c == ':' && esc != EscapeNone:
			rep = `\c`
		case c == ':' && isKey:
			rep = "_"
		case c == '\n' && esc != EscapeNone:
			rep = `\n`
		case c == '\n':
			rep = " "
		case c == '\\' && esc != EscapeNone:
			rep = `\\`
		case c == '\r' && esc == Escape12:
			rep = `\r`
		case c == '\r' && !isKey && i == len(s)-1:
			rep = " "
		default:
			continue // representable as it is
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, rep...)
		start = i + 1
	}
	return append(dst, s[start:]...)
}
