package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/wsadapter"
)

// ServeWeb serves the HTTP listener ln until Shutdown, then returns
// ErrServerClosed: STOMP over WebSocket at WebSocketPath, and Page (the
// demo) everywhere else. Upgraded connections are driven exactly like TCP
// ones. Every connection takes an admission slot when it is accepted, page
// and WebSocket alike (see admitListener).
func (s *Server) ServeWeb(ln net.Listener) error {
	return s.serveWeb(ln, nil)
}

func (s *Server) serveWeb(ln net.Listener, tlsCfg *tls.Config) error {
	mux := http.NewServeMux()
	mux.HandleFunc(s.cfg.WebSocketPath, s.upgrade)
	if s.cfg.Page != nil {
		mux.Handle("/", s.cfg.Page)
	}
	return s.serveHTTP(ln, mux, true, tlsCfg)
}

// admitListener applies the admission limits to every connection of a
// STOMP HTTP listener as it is accepted, not only to upgrades: an idle
// keep-alive connection costs the server as much as a session's socket.
// An admitted connection holds its slot until it is closed (admittedConn),
// and keeps it when it is upgraded. A refused one gets a minimal 503 (or
// 429 with Retry-After) and is closed, by the bounded refusal workers
// (closed at once when they are busy); it is counted in
// stompbox_connections_refused_total. A connection from a trusted proxy
// counts against the total only, until an upgrade names its client.
type admitListener struct {
	net.Listener
	s      *Server
	tlsCfg *tls.Config // for the refusal's handshake on an HTTPS listener
}

// Accept returns the next admitted connection.
func (l *admitListener) Accept() (net.Conn, error) {
	s := l.s
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := admissionKey(nc.RemoteAddr().String())
		if s.trusted.contains(peerIP(nc.RemoteAddr())) {
			key = netip.Addr{}
		}
		if r, ok := s.admission.admit(key); !ok {
			s.metrics.refused[r.limit].Add(1)
			s.cfg.Logger.Debug("http connection refused", "remote", nc.RemoteAddr().String(), "limit", r.limit.String())
			if l.tlsCfg != nil {
				nc = tls.Server(nc, l.tlsCfg)
			}
			s.refuse(nc, refusalResponse(r))
			continue
		}
		return s.admission.hold(nc, key), nil
	}
}

// admittedConnKey is the request context key of a request's admittedConn.
type admittedConnKey struct{}

// withAdmittedConn is http.Server.ConnContext: it makes the connection's
// admission slot reachable from its requests.
func withAdmittedConn(ctx context.Context, nc net.Conn) context.Context {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	if ac, ok := nc.(*admittedConn); ok {
		return context.WithValue(ctx, admittedConnKey{}, ac)
	}
	return ctx
}

// upgrade switches a request to STOMP over WebSocket. The checks run
// cheapest and least revealing first: origin and host (403) and
// subprotocol (400), answered by wsadapter; then, for a request from a
// trusted proxy, the admission limits of the client it forwards (429,
// 503; everyone else's connection was admitted when accepted), so that the
// upgrade token's check, which may be costly, is rate-limited per address
// too; then the token (401). Only then is the connection hijacked.
// Logs name r.URL.Path, never the URL: its query may hold the token.
func (s *Server) upgrade(w http.ResponseWriter, r *http.Request) {
	if s.isClosed() {
		http.Error(w, "server shutting down", http.StatusServiceUnavailable)
		return
	}
	ac, _ := r.Context().Value(admittedConnKey{}).(*admittedConn)
	if ac == nil { // not served by serveHTTP: no slot to keep
		http.Error(w, "internal error: connection not admitted", http.StatusInternalServerError)
		return
	}
	peer := ac.Conn.RemoteAddr()
	client := s.clientAddr(peer, r.Header)
	r.RemoteAddr = client.String() // for everything below: logs, the authenticator
	log := s.cfg.Logger.With("remote", r.RemoteAddr, "path", r.URL.Path)
	if client != peer {
		log = log.With("peer", peer.String())
	}
	hs, err := wsadapter.Negotiate(w, r, s.cfg.WebSocket)
	if err != nil {
		var re *wsadapter.RejectError
		if errors.As(err, &re) {
			switch re.Reason {
			case wsadapter.RejectOrigin:
				s.metrics.upgradeRefused[upgradeRefusedOrigin].Add(1)
			case wsadapter.RejectSubprotocol:
				s.metrics.upgradeRefused[upgradeRefusedSubprotocol].Add(1)
			}
		}
		log.Debug("websocket upgrade refused", "origin", r.Header.Get("Origin"), "host", r.Host, "err", err)
		return
	}
	// restore: the connection of a trusted proxy carries this client from
	// here on; unless it is upgraded, it goes back to the proxy's other
	// requests.
	restore := false
	defer func() {
		if restore {
			ac.rekey(netip.Addr{}, nil)
		}
	}()
	if s.trusted.contains(peerIP(peer)) {
		ref, ok := ac.rekey(admissionKey(r.RemoteAddr), client)
		if !ok {
			s.metrics.refused[ref.limit].Add(1)
			s.metrics.upgradeRefused[upgradeRefusedLimit].Add(1)
			log.Debug("websocket upgrade refused", "limit", ref.limit.String())
			refuseUpgrade(w, ref)
			return
		}
		restore = true
	}
	principal, ok := s.authenticateUpgrade(w, r, log)
	if !ok {
		s.metrics.upgradeRefused[upgradeRefusedAuth].Add(1)
		return
	}
	wc, err := hs.Upgrade(w, r)
	if err != nil {
		log.Debug("websocket upgrade failed", "err", err)
		return
	}
	restore = false
	log.Debug("websocket upgraded", "subprotocol_version", hs.Version.String())
	s.startConn(wc.NetConn(), wsStream{wc}, principal)
}

// upgradeToken is the token the request carries, or "".
func (s *Server) upgradeToken(r *http.Request) string {
	cfg := s.cfg.UpgradeToken
	if cfg.QueryParam != "" {
		if v := r.URL.Query().Get(cfg.QueryParam); v != "" {
			return v
		}
	}
	if cfg.Cookie != "" {
		if c, err := r.Cookie(cfg.Cookie); err == nil && c.Value != "" {
			return c.Value
		}
	}
	return ""
}

// authenticateUpgrade checks the upgrade token, if any. It returns the
// principal (nil without a token) and whether the upgrade may go on; when
// not, it has answered: 401 with WWW-Authenticate (RFC 6750), after the
// broker's AuthFailureDelay for a refused token, or 503 when the check
// itself could not run. The answer never holds the token, even
// from an Authenticator whose error text echoes it.
func (s *Server) authenticateUpgrade(w http.ResponseWriter, r *http.Request, log *slog.Logger) (*broker.Principal, bool) {
	token := s.upgradeToken(r)
	if token == "" {
		if !s.cfg.UpgradeToken.Required {
			return nil, true
		}
		log.Debug("websocket upgrade refused", "auth", "no token")
		w.Header().Set("WWW-Authenticate", "Bearer")
		http.Error(w, "authentication required: "+s.tokenWhere(), http.StatusUnauthorized)
		return nil, false
	}
	auth := s.cfg.Broker.Authenticator
	if auth == nil {
		auth = broker.AllowAll{} // the broker's own default
	}
	timeout := s.cfg.Broker.ConnectTimeout
	if timeout <= 0 {
		timeout = broker.DefaultConnectTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	p, err := auth.Authenticate(ctx, broker.Credentials{Passcode: token, FromUpgrade: true, RemoteAddr: r.RemoteAddr})
	if err == nil && p == nil {
		err = errors.New("no principal")
	}
	if err != nil {
		reason := strings.ReplaceAll(err.Error(), token, "[token]")
		log.Debug("websocket upgrade refused", "auth", reason)
		if errors.Is(err, broker.ErrAuthUnavailable) {
			w.Header().Set("Retry-After", "1")
			http.Error(w, "authentication unavailable, retry later", http.StatusServiceUnavailable)
			return nil, false
		}
		s.broker.DelayAuthFailure(ctx)
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		http.Error(w, "authentication failed: "+reason, http.StatusUnauthorized)
		return nil, false
	}
	log.Debug("websocket upgrade authenticated", "principal", p.Name)
	return p, true
}

// tokenWhere tells a client where the token goes.
func (s *Server) tokenWhere() string {
	cfg := s.cfg.UpgradeToken
	switch {
	case cfg.QueryParam != "" && cfg.Cookie != "":
		return "send a token in the " + cfg.QueryParam + " query parameter or the " + cfg.Cookie + " cookie"
	case cfg.QueryParam != "":
		return "send a token in the " + cfg.QueryParam + " query parameter"
	case cfg.Cookie != "":
		return "send a token in the " + cfg.Cookie + " cookie"
	}
	return "no way to send a token is configured"
}
