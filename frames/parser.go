package frames

import (
	"bytes"
	"fmt"
)

// Handler receives what a Parser finds, in stream order.
//
// The *Frame and every byte slice reachable from it are borrowed: they are
// valid only until HandleFrame returns and must not be retained (copy them, or
// use Frame.Clone). A non-nil error stops parsing and is returned by Parse.
type Handler interface {
	HandleFrame(f *Frame) error
	// HandleHeartbeat is called once for every EOL found between frames.
	// STOMP 1.2: "a heart-beat ... is an EOL", and frames "MAY be followed
	// by multiple EOLs", which are indistinguishable from heart-beats.
	HandleHeartbeat() error
}

// retainPendingCap is the largest spill buffer a Parser keeps after a frame
// that spanned chunks; larger ones go back to the garbage collector so that a
// connection that once carried a big frame does not pin it while idle.
const retainPendingCap = 16 << 10

// retainHeaders is the most headers a Parser keeps room for after a frame;
// a frame with more does not leave its slices (80 B a header) pinned,
// while frames with many custom headers in a steady flow stay below it.
const retainHeaders = 32

// Parser parses a stream of STOMP frames pushed to it in chunks of any size.
// It is not safe for concurrent use; one Parser serves one connection.
//
// Parse decodes header escapes in place, so it writes into the chunk it is
// given. A frame that lies wholly inside one chunk is handed to the Handler as
// views into that chunk; only a frame that spans chunks is copied, into a
// spill buffer the Parser reuses. After Parse returns an error the stream is
// unusable and every later call returns the same error.
type Parser struct {
	limits  Limits  // immutable after NewParser
	version Version // escaping for frames not yet started

	pending []byte    // the start of a frame that spans chunks; empty between frames
	scan    scanState // progress through the current frame
	spans   []headerSpan
	frame   Frame // handed to the Handler; Headers reuses its backing array
	err     error
	// shrink (Shrink) lets the buffers go at the end of the current frame.
	shrink bool
}

// NewParser returns a Parser enforcing limits (zero fields take defaults).
// Frames are unescaped as STOMP 1.2 until SetVersion says otherwise.
func NewParser(limits Limits) *Parser {
	return &Parser{limits: limits.WithDefaults(), version: V12}
}

// SetVersion sets the negotiated protocol version, which decides header
// unescaping for every frame that starts after the call. A server calls it
// while handling CONNECT, so frames pipelined behind the CONNECT are read
// with the negotiated version.
func (p *Parser) SetVersion(v Version) { p.version = v }

// Shrink makes the parser let go of its buffers (header slices, spill
// buffer) once the frame being handled is done with, instead of keeping
// them for the next frame. A Handler calls it for a frame that is rare on
// a connection (CONNECT, SUBSCRIBE): a connection that then goes idle
// holds nothing for frames that may never come, while a steady flow of
// SENDs keeps reusing them. Called between frames, it applies after the
// next one.
func (p *Parser) Shrink() { p.shrink = true }

// Idle reports whether the parser is between frames and holds no buffer
// and no error: nothing would be lost if its owner dropped it and made a
// new one (NewParser, then SetVersion) for the next bytes. After a Shrink
// it usually is; a connection that goes quiet then need not keep it.
func (p *Parser) Idle() bool {
	return p.err == nil && p.pending == nil && p.spans == nil && p.frame.Headers == nil &&
		p.scan.phase == phaseCommand && p.scan.searchFrom == 0
}

// Limits returns the limits the parser enforces, defaults filled in.
func (p *Parser) Limits() Limits { return p.limits }

// Buffered returns how many bytes of an unfinished frame the parser holds. A
// non-zero value at end of stream means the peer stopped mid-frame.
func (p *Parser) Buffered() int { return len(p.pending) }

// Reset drops any partial frame and error, keeping limits and version.
func (p *Parser) Reset() {
	p.pending = p.pending[:0]
	p.resetFrame()
	p.err = nil
}

type phase uint8

const (
	phaseCommand phase = iota
	phaseHeaders
	phaseBody
)

// scanState is the progress through one frame; every offset is relative to
// the first byte of the frame, so it survives copying into the spill buffer.
type scanState struct {
	phase         phase
	command       Command
	escaping      Escaping
	lineStart     int // start of the line being read
	searchFrom    int // where the next search for a delimiter resumes
	headerBytes   int
	bodyStart     int
	contentLength int // -1: none, the body ends at the first NUL
}

// headerSpan locates one decoded header inside the frame's bytes.
type headerSpan struct{ keyStart, keyEnd, valueStart, valueEnd int }

type scanResult uint8

const (
	scanIncomplete scanResult = iota
	scanHeartbeat
	scanFrame
)

// Parse consumes chunk, calling h for every complete frame and heart-beat in
// it, and keeps an unfinished trailing frame for the next call.
func (p *Parser) Parse(chunk []byte, h Handler) error {
	if p.err != nil {
		return p.err
	}
	for len(chunk) > 0 {
		data, taken := chunk, len(chunk)
		buffered := len(p.pending)
		if buffered > 0 {
			taken = p.spillAmount(len(chunk))
			p.pending = append(p.pending, chunk[:taken]...)
			data = p.pending
		}
		n, result, err := p.scanFrame(data)
		if err != nil {
			p.err = err
			return err
		}
		if result == scanIncomplete {
			if buffered == 0 {
				p.pending = append(p.pending[:0], chunk...)
			}
			chunk = chunk[taken:]
			continue
		}
		if result == scanHeartbeat {
			err = h.HandleHeartbeat()
		} else {
			err = h.HandleFrame(p.buildFrame(data[:n]))
		}
		p.resetFrame()
		if err != nil {
			p.err = err
			return err
		}
		chunk = chunk[n-buffered:]
	}
	return nil
}

// spillAmount is how many of the next available bytes belong in the spill
// buffer: all of them, unless the frame's content-length says fewer.
func (p *Parser) spillAmount(available int) int {
	s := &p.scan
	if s.phase == phaseBody && s.contentLength >= 0 {
		need := s.bodyStart + s.contentLength + 1 - len(p.pending)
		return min(need, available)
	}
	return available
}

func (p *Parser) resetFrame() {
	if p.shrink || cap(p.pending) > retainPendingCap {
		p.pending = nil
	} else {
		p.pending = p.pending[:0]
	}
	p.scan = scanState{}
	if p.shrink || cap(p.spans) > retainHeaders {
		p.spans = nil
		p.frame = Frame{}
	} else {
		p.spans = p.spans[:0]
		clear(p.frame.Headers)
		p.frame = Frame{Headers: p.frame.Headers[:0]}
	}
	p.shrink = false
}

// buildFrame turns the recorded spans over data into p.frame. Three-index
// slices stop a handler's append from overwriting the bytes that follow.
func (p *Parser) buildFrame(data []byte) *Frame {
	f := &p.frame
	f.Command = p.scan.command
	if cap(f.Headers) < len(p.spans) {
		// One allocation of the right size rather than appends that grow
		// it step by step: after a Shrink the slices are made again.
		f.Headers = make([]Header, 0, len(p.spans))
	}
	for _, s := range p.spans {
		f.Headers = append(f.Headers, Header{
			Key:   data[s.keyStart:s.keyEnd:s.keyEnd],
			Value: data[s.valueStart:s.valueEnd:s.valueEnd],
		})
	}
	bodyEnd := len(data) - 1 // the NUL
	f.Body = data[p.scan.bodyStart:bodyEnd:bodyEnd]
	return f
}

// scanFrame advances through data, the bytes of one frame from its first
// byte, resuming where the last call stopped. It returns the frame's length
// including its NUL (or the heart-beat's EOL) once complete.
func (p *Parser) scanFrame(data []byte) (int, scanResult, error) {
	s := &p.scan
	if s.phase == phaseCommand {
		eol := bytes.IndexByte(data[s.searchFrom:], '\n')
		if eol < 0 {
			if len(data) > p.limits.MaxCommandLine+1 { // +1: a CR may precede the LF
				return 0, 0, fmt.Errorf("%w: command line longer than %d bytes", ErrFrameTooLarge, p.limits.MaxCommandLine)
			}
			s.searchFrom = len(data)
			return 0, scanIncomplete, nil
		}
		eol += s.searchFrom
		line := trimCR(data[:eol])
		if len(line) == 0 {
			return eol + 1, scanHeartbeat, nil
		}
		if len(line) > p.limits.MaxCommandLine {
			return 0, 0, fmt.Errorf("%w: command line longer than %d bytes", ErrFrameTooLarge, p.limits.MaxCommandLine)
		}
		s.command = ParseCommand(line)
		if s.command == CmdUnknown {
			return 0, 0, fmt.Errorf("%w: %q", ErrUnknownCommand, line)
		}
		s.escaping = EscapingFor(p.version, s.command)
		s.contentLength = -1
		s.phase = phaseHeaders
		s.lineStart, s.searchFrom = eol+1, eol+1
	}
	if s.phase == phaseHeaders {
		if err := p.scanHeaders(data); err != nil || s.phase == phaseHeaders {
			return 0, scanIncomplete, err
		}
	}
	return p.scanBody(data)
}

// scanHeaders reads complete header lines until the blank line that ends
// them, decoding each in place and recording where its key and value lie.
func (p *Parser) scanHeaders(data []byte) error {
	s := &p.scan
	for {
		eol := bytes.IndexByte(data[s.searchFrom:], '\n')
		if eol < 0 {
			partial := len(data) - s.lineStart
			if partial > p.limits.MaxHeaderLine+1 || s.headerBytes+partial > p.limits.MaxHeaderBytes+1 {
				return fmt.Errorf("%w: header line longer than %d bytes or headers over %d bytes",
					ErrFrameTooLarge, p.limits.MaxHeaderLine, p.limits.MaxHeaderBytes)
			}
			s.searchFrom = len(data)
			return nil
		}
		eol += s.searchFrom
		line := trimCR(data[s.lineStart:eol])
		if len(line) == 0 {
			s.phase = phaseBody
			s.bodyStart, s.searchFrom = eol+1, eol+1
			return nil
		}
		if err := p.addHeader(line, s.lineStart); err != nil {
			return err
		}
		s.lineStart, s.searchFrom = eol+1, eol+1
	}
}

// addHeader checks the limits on one header line starting at offset, splits
// it at its first colon and decodes key and value in place.
func (p *Parser) addHeader(line []byte, offset int) error {
	s := &p.scan
	if len(p.spans) >= p.limits.MaxHeaders {
		return fmt.Errorf("%w: more than %d headers", ErrFrameTooLarge, p.limits.MaxHeaders)
	}
	if len(line) > p.limits.MaxHeaderLine {
		return fmt.Errorf("%w: header line of %d bytes, limit %d", ErrFrameTooLarge, len(line), p.limits.MaxHeaderLine)
	}
	s.headerBytes += len(line)
	if s.headerBytes > p.limits.MaxHeaderBytes {
		return fmt.Errorf("%w: headers over %d bytes", ErrFrameTooLarge, p.limits.MaxHeaderBytes)
	}
	colon := bytes.IndexByte(line, ':')
	if colon < 0 {
		return fmt.Errorf("%w: header line without a colon", ErrMalformedFrame)
	}
	if colon == 0 {
		return fmt.Errorf("%w: header with an empty name", ErrMalformedFrame)
	}
	keyLen, err := unescapeInPlace(line[:colon], s.escaping)
	if err != nil {
		return err
	}
	valueLen, err := unescapeInPlace(line[colon+1:], s.escaping)
	if err != nil {
		return err
	}
	span := headerSpan{
		keyStart: offset, keyEnd: offset + keyLen,
		valueStart: offset + colon + 1, valueEnd: offset + colon + 1 + valueLen,
	}
	if p.spans == nil {
		p.spans = make([]headerSpan, 0, 4) // most frames have at most 4 headers
	}
	p.spans = append(p.spans, span)
	if s.contentLength < 0 && string(line[:keyLen]) == HeaderContentLength {
		n, err := parseContentLength(line[colon+1:colon+1+valueLen], p.limits.MaxBody)
		if err != nil {
			return err
		}
		s.contentLength = n
	}
	return nil
}

// scanBody finds the end of the body: content-length bytes then a NUL when
// the header was given, else the first NUL.
func (p *Parser) scanBody(data []byte) (int, scanResult, error) {
	s := &p.scan
	if s.contentLength >= 0 {
		end := s.bodyStart + s.contentLength
		if len(data) <= end {
			return 0, scanIncomplete, nil
		}
		if data[end] != 0 {
			return 0, 0, fmt.Errorf("%w: no NUL after the %d body bytes of content-length", ErrMalformedFrame, s.contentLength)
		}
		return end + 1, scanFrame, nil
	}
	nul := bytes.IndexByte(data[s.searchFrom:], 0)
	if nul < 0 {
		if len(data)-s.bodyStart > p.limits.MaxBody {
			return 0, 0, fmt.Errorf("%w: body over %d bytes", ErrFrameTooLarge, p.limits.MaxBody)
		}
		s.searchFrom = len(data)
		return 0, scanIncomplete, nil
	}
	end := s.searchFrom + nul
	if end-s.bodyStart > p.limits.MaxBody {
		return 0, 0, fmt.Errorf("%w: body over %d bytes", ErrFrameTooLarge, p.limits.MaxBody)
	}
	return end + 1, scanFrame, nil
}

// parseContentLength reads a non-negative decimal integer, failing with
// ErrFrameTooLarge as soon as it exceeds maxBody.
func parseContentLength(v []byte, maxBody int) (int, error) {
	n, valid, over := parseDecimal(v, maxBody)
	switch {
	case !valid:
		return 0, fmt.Errorf("%w: %q is not a non-negative integer", ErrBadContentLength, truncate(v))
	case over:
		return 0, fmt.Errorf("%w: content-length %s over the %d byte limit", ErrFrameTooLarge, truncate(v), maxBody)
	}
	return n, nil
}

// parseDecimal reads a non-empty run of ASCII digits. It stops as soon as
// the value passes limit, so it cannot overflow; over then says so.
func parseDecimal(v []byte, limit int) (n int, valid, over bool) {
	if len(v) == 0 {
		return 0, false, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		n = n*10 + int(c-'0')
		if n > limit {
			return 0, true, true
		}
	}
	return n, true, false
}

func trimCR(line []byte) []byte {
	if n := len(line); n > 0 && line[n-1] == '\r' {
		return line[:n-1]
	}
	return line
}

// truncate bounds peer bytes quoted in error messages.
func truncate(b []byte) []byte {
	const max = 32
	if len(b) > max {
		return b[:max]
	}
	return b
}
