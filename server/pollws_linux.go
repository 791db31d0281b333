package server

import "github.com/stompbox/stompbox/wsadapter"

// pollableStream says whether the epoll driver can serve st, and returns
// its WebSocket connection (nil on native STOMP).
func pollableStream(st stream) (*wsadapter.Conn, bool) {
	switch s := st.(type) {
	case tcpStream:
		return nil, true
	case wsStream:
		return s.Conn, true
	}
	return nil, false
}
