package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

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
	sl, _ := r.Context().Value(slotKey{}).(*slot)
	if sl == nil { // not served by serveHTTP: no slot to keep
		http.Error(w, "internal error: connection not admitted", http.StatusInternalServerError)
		return
	}
	peer := r.RemoteAddr
	fromProxy, client, unreadable := s.forwarded(r)
	if unreadable {
		s.cfg.Logger.Debug("websocket upgrade refused", "peer", peer, "path", r.URL.Path, "forwarded", "unreadable")
		http.Error(w, "the forwarding headers name no client address", http.StatusBadRequest)
		return
	}
	if client != nil {
		r.RemoteAddr = client.String() // for everything below: logs, the authenticator
	}
	log := s.cfg.Logger.With("remote", r.RemoteAddr, "path", r.URL.Path)
	if client != nil {
		log = log.With("peer", peer)
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
	// Unless the upgrade succeeds: a connection net/http handed over is
	// closed, so its slot goes; one it still serves goes back to the
	// proxy's other requests (for a trusted proxy's) or stays as it was.
	upgraded, restore := false, false
	defer func() {
		switch {
		case upgraded:
		case sl.wasHijacked():
			sl.release()
		case restore:
			sl.rekey(netip.Addr{}, nil)
		}
	}()
	if fromProxy {
		ref, ok := sl.rekey(broker.AddressKey(r.RemoteAddr), client)
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
	upgraded = true
	log.Debug("websocket upgraded", "subprotocol_version", hs.Version.String())
	// The driver's socket carries the slot; wc keeps writing to the
	// socket itself.
	s.startConn(&admittedConn{Conn: wc.NetConn(), slot: sl}, wsStream{wc}, principal, time.Time{})
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
			retry := time.Second
			var wait interface{ RetryAfter() time.Duration }
			if errors.As(err, &wait) { // an address backing off after failures
				retry = max(retry, wait.RetryAfter())
			}
			w.Header().Set("Retry-After", strconv.Itoa(int((retry+time.Second-1)/time.Second)))
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
