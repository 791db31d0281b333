package frames

import "errors"

// Error is a protocol failure found while parsing or decoding frames. Code is
// the stable slug a server puts in the error-code header of its ERROR frame;
// Message is the short text for the message header. Parsing errors wrap one of
// the sentinels below with %w and add the detail.
type Error struct {
	Code    string
	Message string
}

func (e *Error) Error() string { return "frames: " + e.Message }

// The sentinel errors of this package; branch on them with errors.Is and read
// their code with ErrorCode.
var (
	// ErrFrameTooLarge: a command line, header line, header count, header
	// bytes or body exceeded its Limits.
	ErrFrameTooLarge = &Error{Code: "frame-too-large", Message: "frame too large"}
	// ErrMalformedFrame: the bytes are not a STOMP frame (a header without a
	// colon, an empty header name, a body not ended by NUL, ...).
	ErrMalformedFrame = &Error{Code: "malformed-frame", Message: "malformed frame"}
	// ErrBadEscape: a header holds an escape sequence the frame's version
	// does not define, e.g. "\t" (STOMP 1.2: "MUST treat as a fatal protocol error").
	ErrBadEscape = &Error{Code: "malformed-frame", Message: "undefined escape sequence in header"}
	// ErrBadContentLength: content-length is not a non-negative decimal integer.
	ErrBadContentLength = &Error{Code: "malformed-frame", Message: "invalid content-length"}
	// ErrUnknownCommand: the command line is not a STOMP command.
	ErrUnknownCommand = &Error{Code: "unknown-command", Message: "unknown command"}
	// ErrBadHeartBeat: a heart-beat header is not two non-negative integers.
	ErrBadHeartBeat = &Error{Code: "malformed-frame", Message: "invalid heart-beat header"}
)

// ErrorCode returns the STOMP error-code slug of err, or "" when err is not
// (and does not wrap) an *Error of this package.
func ErrorCode(err error) string {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Code
	}
	return ""
}
