// Package frames is the STOMP 1.0/1.1/1.2 wire format: a push parser over
// borrowed bytes, append-style encoders, header escaping per version and
// command, frame limits with typed errors, and the heart-beat and version
// negotiation arithmetic of the specification.
//
// It imports nothing else of stompbox and does no I/O: callers feed it the
// bytes they read and write the bytes it appends.
//
// Parsing is push-style. Bytes arrive in chunks of any size; frames may span
// chunks and a chunk may hold many frames. Header keys, values and bodies
// handed to a Handler are views into the chunk (or, for a frame that spans
// chunks, into the parser's own buffer) and are valid only until the handler
// returns:
//
//	p := frames.NewParser(frames.Limits{}) // zero fields take the defaults
//	for {
//		n, err := conn.Read(buf)
//		if err := p.Parse(buf[:n], handler); err != nil {
//			// frames.ErrorCode(err) is the STOMP error-code, e.g. "frame-too-large"
//		}
//	}
//
// Encoding appends to a caller-owned slice so buffers are reused:
//
//	out = frames.AppendFrame(out[:0], frames.V12, &f)
package frames
