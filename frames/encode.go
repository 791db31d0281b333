package frames

import "strconv"

// AppendFrame appends the wire form of f, escaped for version v and f's
// command, and returns the extended slice. f.Command must be a known command
// and header keys must be non-empty.
//
// Content-length headers in f.Headers are skipped: the encoder writes its own,
// computed from the body, for SEND, MESSAGE and ERROR frames and for any
// frame with a non-empty body, so a body may hold NUL bytes.
func AppendFrame(dst []byte, v Version, f *Frame) []byte {
	esc := EscapingFor(v, f.Command)
	dst = AppendCommand(dst, f.Command)
	for _, h := range f.Headers {
		if string(h.Key) == HeaderContentLength {
			continue
		}
		dst = AppendHeader(dst, esc, h.Key, h.Value)
	}
	if len(f.Body) > 0 || f.Command.HasBody() {
		return AppendBody(dst, f.Body)
	}
	return AppendEnd(dst)
}

// AppendCommand appends the command line of c.
func AppendCommand(dst []byte, c Command) []byte {
	dst = append(dst, c.String()...)
	return append(dst, '\n')
}

// AppendHeader appends one header line, escaping key and value with esc.
func AppendHeader(dst []byte, esc Escaping, key, value []byte) []byte {
	dst = appendEscaped(dst, esc, key, true)
	dst = append(dst, ':')
	dst = appendEscaped(dst, esc, value, false)
	return append(dst, '\n')
}

// AppendHeaderString is AppendHeader for string keys and values.
func AppendHeaderString(dst []byte, esc Escaping, key, value string) []byte {
	dst = appendEscaped(dst, esc, key, true)
	dst = append(dst, ':')
	dst = appendEscaped(dst, esc, value, false)
	return append(dst, '\n')
}

// AppendHeaderInt appends a header whose value is the decimal n.
func AppendHeaderInt(dst []byte, esc Escaping, key string, n int64) []byte {
	dst = appendEscaped(dst, esc, key, true)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, n, 10)
	return append(dst, '\n')
}

// AppendBody ends the headers with a content-length header and appends the
// blank line, body and NUL that complete a frame.
func AppendBody(dst []byte, body []byte) []byte {
	dst = append(dst, HeaderContentLength+":"...)
	dst = strconv.AppendInt(dst, int64(len(body)), 10)
	dst = append(dst, '\n', '\n')
	dst = append(dst, body...)
	return append(dst, 0)
}

// AppendEnd completes a frame without a body: the blank line and the NUL.
func AppendEnd(dst []byte) []byte {
	return append(dst, '\n', 0)
}

// AppendHeartbeat appends one heart-beat, a single EOL.
func AppendHeartbeat(dst []byte) []byte {
	return append(dst, '\n')
}
