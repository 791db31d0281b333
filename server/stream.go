package server

import (
	"net"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/wsadapter"
)

// stream is how the connection driver moves STOMP bytes over one
// transport: raw TCP, or WebSocket messages.
type stream interface {
	// Read returns STOMP bytes.
	Read(p []byte) (int, error)
	// WriteFrames writes encoded frames; out[ends[i-1]:ends[i]] is frame
	// i, valid UTF-8 when text[i].
	WriteFrames(out []byte, ends []int, text []bool) error
	// Goodbye ends the transport's own protocol after the last frame (the
	// WebSocket close frame); the driver then closes the socket.
	Goodbye(reason broker.CloseReason)
}

// tcpStream is native STOMP: the socket is the byte stream.
type tcpStream struct{ net.Conn }

func (t tcpStream) WriteFrames(out []byte, _ []int, _ []bool) error {
	_, err := t.Conn.Write(out)
	return err
}

func (tcpStream) Goodbye(broker.CloseReason) {}

// wsStream is STOMP over WebSocket.
type wsStream struct{ *wsadapter.Conn }

// WriteFrames sends each frame as a text message when it is valid UTF-8
// (the session knows without scanning it), binary otherwise.
func (w wsStream) WriteFrames(out []byte, ends []int, text []bool) error {
	return w.Conn.WriteFramesText(out, ends, text)
}

func (w wsStream) Goodbye(reason broker.CloseReason) {
	_ = w.Close(closeCode(reason), reason.String())
}

// closeCode maps why a session ended to the WebSocket close code a browser's
// onclose sees, so an application can tell errors from network failure
// (ARCHITECTURE.md: 1000 after DISCONNECT, 1012 shutdown (service restart), 1002 protocol,
// 1007 bad UTF-8, 1008 policy/auth, 1009 too big, 1011 internal).
func closeCode(reason broker.CloseReason) wsadapter.CloseCode {
	switch reason {
	case broker.CloseDisconnect, broker.ClosePeer:
		return wsadapter.CloseNormal
	case broker.CloseShutdown:
		return wsadapter.CloseServiceRestart
	case broker.CloseProtocolError:
		return wsadapter.CloseProtocolError
	case broker.CloseInvalidData:
		return wsadapter.CloseInvalidData
	case broker.ClosePolicy, broker.CloseSlowConsumer, broker.CloseLimitExceeded,
		broker.CloseConnectTimeout, broker.CloseHeartbeatTimeout, broker.CloseTokenExpired, broker.CloseTakenOver:
		return wsadapter.ClosePolicy
	case broker.CloseFrameTooLarge:
		return wsadapter.CloseTooBig
	}
	return wsadapter.CloseInternal
}

// refuseFor turns a WebSocket violation into the ERROR and close reason
// the session ends with.
func refuseFor(e *wsadapter.ProtocolError) (broker.CloseReason, string, string) {
	switch e.Code {
	case wsadapter.CloseTooBig:
		return broker.CloseFrameTooLarge, broker.CodeFrameTooLarge, "frame too large"
	case wsadapter.CloseInvalidData:
		return broker.CloseInvalidData, broker.CodeMalformedFrame, "invalid UTF-8 in a text message"
	}
	return broker.CloseProtocolError, broker.CodeProtocolError, "WebSocket protocol error"
}
