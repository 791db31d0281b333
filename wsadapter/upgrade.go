package wsadapter

import (
	"errors"
	"net/http"
	"net/url"
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
	// AllowedOrigins lists the Origin values (e.g. "https://app.example")
	// a browser may connect from; "*" allows any. When empty, only an
	// Origin whose host equals the request's Host is accepted. Requests
	// without Origin (non-browser clients) are always accepted.
	AllowedOrigins []string
	// HandshakeTimeout bounds writing the upgrade response. Default 5s.
	HandshakeTimeout time.Duration
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

// ErrRejected is returned (wrapped) by Upgrade when it refused the request;
// the HTTP response has been written.
var ErrRejected = errors.New("wsadapter: upgrade rejected")

// Upgrade checks the request's origin and subprotocols and switches the
// connection to WebSocket. The highest STOMP subprotocol offered wins; none
// offered means STOMP 1.2; only unknown ones is refused with 400. version is
// what the subprotocol says (CONNECT's accept-version still negotiates the
// session). On error the HTTP response has been written.
func Upgrade(w http.ResponseWriter, r *http.Request, cfg Config) (c *Conn, version frames.Version, err error) {
	cfg = cfg.withDefaults()
	if !originAllowed(r, cfg.AllowedOrigins) {
		http.Error(w, "origin "+r.Header.Get("Origin")+" is not allowed", http.StatusForbidden)
		return nil, 0, errors.Join(ErrRejected, errors.New("origin not allowed"))
	}
	offered := offeredProtocols(r)
	chosen, version := "", frames.V12
	if len(offered) > 0 {
		for _, p := range subprotocols {
			if slices.Contains(offered, p.name) {
				chosen, version = p.name, p.version
				break
			}
		}
		if chosen == "" {
			http.Error(w, "no supported STOMP subprotocol offered; use v12.stomp, v11.stomp or v10.stomp", http.StatusBadRequest)
			return nil, 0, errors.Join(ErrRejected, errors.New("no supported subprotocol"))
		}
	}
	u := ws.HTTPUpgrader{Timeout: cfg.HandshakeTimeout}
	if chosen != "" {
		u.Protocol = func(p string) bool { return p == chosen }
	}
	nc, rw, _, err := u.Upgrade(r, w)
	if err != nil {
		if nc != nil {
			_ = nc.Close()
		}
		return nil, 0, errors.Join(ErrRejected, err)
	}
	return newConn(nc, rw.Reader, cfg.MaxMessage), version, nil
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
func originAllowed(r *http.Request, allowed []string) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	if len(allowed) > 0 {
		return slices.Contains(allowed, "*") || slices.Contains(allowed, origin)
	}
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}
