package server

import (
	"net"
	"net/http"

	"github.com/stompbox/stompbox/wsadapter"
)

// ServeWeb serves the HTTP listener ln until Shutdown, then returns
// ErrServerClosed: STOMP over WebSocket at WebSocketPath, and Page (the
// demo) everywhere else. Upgraded connections are driven exactly like TCP
// ones.
func (s *Server) ServeWeb(ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc(s.cfg.WebSocketPath, s.upgrade)
	if s.cfg.Page != nil {
		mux.Handle("/", s.cfg.Page)
	}
	return s.serveHTTP(ln, mux, true)
}

// upgrade switches a request to STOMP over WebSocket (wsadapter answers
// refused requests itself: 403 for a foreign origin, 400 for unknown
// subprotocols).
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	if s.isClosed() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	wc, version, err := wsadapter.Upgrade(w, r, s.cfg.WebSocket)
	if err != nil {
		s.cfg.Logger.Debug("websocket upgrade refused", "remote", r.RemoteAddr, "origin", r.Header.Get("Origin"), "err", err)
		return
	}
	s.cfg.Logger.Debug("websocket upgraded", "remote", r.RemoteAddr, "subprotocol_version", version.String())
	s.startConn(wc.NetConn(), wsStream{wc})
}
