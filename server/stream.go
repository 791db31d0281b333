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
	// WriteBatch writes a batch of encoded frames (broker.OutputBatch):
	// the frames' own bytes and the message bodies it refers to.
	WriteBatch(b *broker.OutputBatch) error
	// Goodbye ends the transport's own protocol after the last frame (the
	// WebSocket close frame); the driver then closes the socket.
	Goodbye(reason broker.CloseReason)
}

// tcpStream is native STOMP: the socket is the byte stream.
type tcpStream struct{ net.Conn }

// WriteBatch writes the batch in one write: a plain one when the batch
// borrowed no body, else one vectored write (writev) on a plain TCP
// socket, with headers from the batch's buffer and bodies from the
// messages. TLS encrypts a copy anyway, and would write each slice of a
// vector as a record of its own: it gets the batch flattened.
func (t tcpStream) WriteBatch(b *broker.OutputBatch) error {
	out, ok := b.Contiguous()
	if tc := vectorConn(t.Conn); tc != nil && !ok {
		_, err := (*net.Buffers)(b.Buffers()).WriteTo(tc)
		return err
	}
	if !ok {
		out, _, _ = b.Flat()
	}
	_, err := t.Conn.Write(out)
	return err
}

func (tcpStream) Goodbye(broker.CloseReason) {}

// vectorConn returns the socket under nc if writing net.Buffers to it is
// one writev, or nil. Writing to the socket rather than to admittedConn
// (which only reads differently) keeps the vector: a net.Buffers write to
// a wrapper is one write per slice.
func vectorConn(nc net.Conn) *net.TCPConn {
	tc, _ := socketOf(nc).(*net.TCPConn)
	return tc
}

// socketOf is the connection under an admission slot's wrapper (nc itself
// when it has none): the socket for writev and epoll, unless TLS.
func socketOf(nc net.Conn) net.Conn {
	if ac, ok := nc.(*admittedConn); ok {
		return ac.Conn
	}
	return nc
}

// wsStream is STOMP over WebSocket.
type wsStream struct{ *wsadapter.Conn }

// WriteBatch sends each frame as a text message when it is valid UTF-8
// (the session knows without scanning it), binary otherwise: one writev of
// message headers, the frames' own bytes and the bodies they refer to. Over
// TLS the batch is flattened first, as tcpStream does.
func (w wsStream) WriteBatch(b *broker.OutputBatch) error {
	if vectorConn(w.NetConn()) != nil {
		return w.Conn.WriteBatch(b)
	}
	out, ends, text := b.Flat()
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
		broker.CloseConnectTimeout, broker.CloseHeartbeatTimeout, broker.CloseTokenExpired, broker.CloseTakenOver,
		broker.CloseOperator:
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
