package wsadapter

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"github.com/stompbox/stompbox/frames"
)

// Config configures upgrades. A zero field takes its default.
type Config struct {
	// MaxMessage is the largest WebSocket message payload accepted; larger
	// ones are refused with close code 1009 before their payload is read.
	// Default: frames.DefaultMaxBody plus 64 KiB of headers.
	MaxMessage int
	// AllowedOrigins lists the origins a browser may connect from: exact
	// ones ("https://app.example.com", "http://127.0.0.1:8080"), wildcard
	// subdomains ("https://*.example.com": a.example.com and
	// a.b.example.com, not example.com, on that scheme and port only), or
	// "*" for any. Scheme and host compare case-insensitively and a default
	// port equals none, as RFC 6454 serializes origins. Check entries with
	// ValidOrigin; a malformed one matches nothing. When empty, an Origin
	// is accepted only when it is the request's own origin (see
	// AllowedHosts). Requests without Origin (non-browser clients) are
	// always accepted.
	AllowedOrigins []string
	// AllowedHosts applies when AllowedOrigins is empty: an Origin is then
	// accepted only when its scheme is the listener's (http on a plain
	// one, https behind TLS), its host and port are the Host header's
	// (a missing port being the scheme's default), and that Host is a
	// loopback name or address (localhost, 127.0.0.0/8, [::1]) or one of
	// these entries. An entry is a host name or IP address (IPv6 in
	// brackets), optionally with a port: "chat.example.com" matches it on
	// any port, "chat.example.com:8443" on that port only. Check entries
	// with ValidHost. The Host check is what stops DNS rebinding: a page
	// of evil.example whose name now resolves to the broker sends Host
	// and Origin evil.example, which agree with each other but name no
	// host the broker serves.
	AllowedHosts []string
	// HandshakeTimeout bounds writing the upgrade response. Default 5s.
	HandshakeTimeout time.Duration
	// Buffers, when set, lends the server's Conns the buffers they need
	// only for a moment (see Buffers): share one between all of them.
	// Nil: each Conn allocates its own when it needs one.
	Buffers *Buffers
}

func (c Config) withDefaults() Config {
	if c.MaxMessage <= 0 {
		c.MaxMessage = frames.DefaultMaxBody + frames.DefaultMaxHeaderBytes
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = 5 * time.Second
	}
	return c
}

// The STOMP subprotocols, best first.
var subprotocols = []struct {
	name    string
	version frames.Version
}{
	{"v12.stomp", frames.V12},
	{"v11.stomp", frames.V11},
	{"v10.stomp", frames.V10},
}

// ErrRejected is returned (wrapped, as a *RejectError) by Upgrade,
// Negotiate and Handshake.Upgrade when they refused the request; the HTTP
// response has been written.
var ErrRejected = errors.New("wsadapter: upgrade rejected")

// RejectReason says which check refused an upgrade, so that the caller can
// count refusals by cause without parsing error text.
type RejectReason uint8

// The reasons of a RejectError.
const (
	// RejectOrigin: the Origin is not allowed (answered 403).
	RejectOrigin RejectReason = iota + 1
	// RejectSubprotocol: only unknown subprotocols were offered (400).
	RejectSubprotocol
	// RejectHandshake: not a valid WebSocket handshake (gobwas/ws answered,
	// with a 4xx), or the connection failed while upgrading.
	RejectHandshake
)

// String names the reason as a metric label would.
func (r RejectReason) String() string {
	switch r {
	case RejectOrigin:
		return "origin"
	case RejectSubprotocol:
		return "subprotocol"
	case RejectHandshake:
		return "handshake"
	}
	return "unknown"
}

// RejectError is a refused upgrade: errors.Is(err, ErrRejected) holds.
type RejectError struct {
	Reason RejectReason
	Err    error // the detail
}

func (e *RejectError) Error() string { return "wsadapter: upgrade rejected: " + e.Err.Error() }

// Unwrap returns the detail.
func (e *RejectError) Unwrap() error { return e.Err }

// Is makes every RejectError an ErrRejected.
func (e *RejectError) Is(target error) bool { return target == ErrRejected }

// Handshake is an upgrade request that passed the origin and subprotocol
// checks and is not answered yet: the caller may still refuse it (rate
// limits, a token) before Upgrade hijacks the connection.
type Handshake struct {
	cfg      Config // with defaults
	protocol string // the subprotocol to answer with, "" for none
	// Version is what the chosen subprotocol says (STOMP 1.2 when none was
	// offered); CONNECT's accept-version still negotiates the session.
	Version frames.Version
}

// Upgrade checks the request's origin and subprotocols and switches the
// connection to WebSocket: Negotiate, then Handshake.Upgrade. On error the
// HTTP response has been written.
func Upgrade(w http.ResponseWriter, r *http.Request, cfg Config) (c *Conn, version frames.Version, err error) {
	h, err := Negotiate(w, r, cfg)
	if err != nil {
		return nil, 0, err
	}
	if c, err = h.Upgrade(w, r); err != nil {
		return nil, 0, err
	}
	return c, h.Version, nil
}

// Negotiate checks the request's origin and subprotocols without answering
// it when they pass. The highest STOMP subprotocol offered wins; none
// offered means STOMP 1.2; only unknown ones is refused with 400, and a
// foreign origin with 403 (the origin is checked first: a page that may not
// connect learns nothing else). On error the HTTP response has been written.
func Negotiate(w http.ResponseWriter, r *http.Request, cfg Config) (Handshake, error) {
	cfg = cfg.withDefaults()
	if !originAllowed(r, cfg) {
		http.Error(w, "origin "+r.Header.Get("Origin")+" is not allowed", http.StatusForbidden)
		return Handshake{}, &RejectError{Reason: RejectOrigin, Err: errors.New("origin not allowed")}
	}
	offered := offeredProtocols(r)
	h := Handshake{cfg: cfg, Version: frames.V12}
	if len(offered) > 0 {
		for _, p := range subprotocols {
			if slices.Contains(offered, p.name) {
				h.protocol, h.Version = p.name, p.version
				break
			}
		}
		if h.protocol == "" {
			http.Error(w, "no supported STOMP subprotocol offered; use v12.stomp, v11.stomp or v10.stomp", http.StatusBadRequest)
			return Handshake{}, &RejectError{Reason: RejectSubprotocol, Err: errors.New("no supported subprotocol")}
		}
	}
	return h, nil
}

// Upgrade answers the request with 101 Switching Protocols and returns the
// WebSocket connection. On error the HTTP response has been written.
func (h Handshake) Upgrade(w http.ResponseWriter, r *http.Request) (*Conn, error) {
	u := ws.HTTPUpgrader{Timeout: h.cfg.HandshakeTimeout}
	if h.protocol != "" {
		chosen := h.protocol
		u.Protocol = func(p string) bool { return p == chosen }
	}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		return nil, &RejectError{Reason: RejectHandshake, Err: err}
	}
	return newConn(nc, rw.Reader, h.cfg.MaxMessage, h.cfg.Buffers), nil
}

func offeredProtocols(r *http.Request) []string {
	var out []string
	for _, v := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}

// originAllowed applies the origin policy: browsers send Origin, and a
// page from another site must not reach the broker with the user's
// cookies or network position unless the operator allowed it.
func originAllowed(r *http.Request, cfg Config) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(cfg.AllowedOrigins) > 0 {
		return originListed(origin, cfg.AllowedOrigins)
	}
	return sameOrigin(r, origin, cfg.AllowedHosts)
}
