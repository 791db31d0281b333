package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// adminRole is what an admin API client may do.
type adminRole uint8

const (
	roleNone  adminRole = iota
	roleRead            // the read endpoints
	roleAdmin           // and the actions
)

func (r adminRole) String() string {
	switch r {
	case roleRead:
		return "read"
	case roleAdmin:
		return "admin"
	}
	return "none"
}

// The users file's roles that give admin API roles.
const (
	userRoleAdmin   = "admin"
	userRoleMonitor = "monitor"
)

// basicCacheFor is how long a successful Basic check is remembered: a
// console polling every second must not run bcrypt every second.
const basicCacheFor = 60 * time.Second

// maxBasicCache bounds the remembered checks; past it the table is
// emptied (a few bcrypt runs again, not unbounded memory).
const maxBasicCache = 1024

// errNoAdminCredentials is the 403 of actions when nothing is configured.
const errNoAdminCredentials = "no admin credentials configured: actions are disabled"

// adminAuth decides who an admin API request is and what role it has.
type adminAuth struct {
	token, readToken []byte               // immutable; empty: none
	users            broker.Authenticator // immutable; nil: no Basic
	// delay slows a refused Basic or bearer credential down (the STOMP
	// login failure delay), within the request's context.
	delay func(ctx context.Context)

	mu    sync.Mutex
	cache map[[32]byte]basicEntry // guarded by mu: by hash of user and password
}

// basicEntry is one remembered successful Basic check.
type basicEntry struct {
	user    string
	role    adminRole
	expires time.Time
}

func newAdminAuth(cfg Config, delay func(context.Context)) adminAuth {
	return adminAuth{
		token:     []byte(cfg.AdminToken),
		readToken: []byte(cfg.AdminReadToken),
		users:     cfg.AdminUsers,
		delay:     delay,
		cache:     make(map[[32]byte]basicEntry),
	}
}

// configured says whether any credential is configured; without one the
// API answers loopback clients only, read-only.
// forget drops the remembered Basic logins (the users file was reloaded).
func (a *adminAuth) forget() {
	a.mu.Lock()
	clear(a.cache)
	a.mu.Unlock()
}

func (a *adminAuth) configured() bool {
	return len(a.token) > 0 || len(a.readToken) > 0 || a.users != nil
}

// authResult is who a request is: whom logs name, its role, or the
// status and error text that refuse it.
type authResult struct {
	who    string
	role   adminRole
	status int
	err    string
}

// check authenticates r.
func (a *adminAuth) check(r *http.Request) authResult {
	if !a.configured() {
		if !isLoopback(r.RemoteAddr) {
			return authResult{status: http.StatusForbidden, err: "no admin credentials configured: only loopback clients are answered"}
		}
		// A page whose name was rebound to 127.0.0.1 reaches this
		// listener from the browser with its own name in Host.
		if !loopbackHost(r.Host) {
			return authResult{status: http.StatusForbidden, err: "no admin credentials configured: only requests to localhost or a loopback address are answered"}
		}
		return authResult{who: "loopback " + r.RemoteAddr, role: roleRead}
	}
	h := r.Header.Get("Authorization")
	scheme, cred, _ := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	switch {
	case strings.EqualFold(scheme, "Bearer") && cred != "":
		// Both compared, always: the time taken says nothing of which
		// token (if any) matched.
		isAdmin := len(a.token) > 0 && subtle.ConstantTimeCompare([]byte(cred), a.token) == 1
		isRead := len(a.readToken) > 0 && subtle.ConstantTimeCompare([]byte(cred), a.readToken) == 1
		switch {
		case isAdmin:
			return authResult{who: "token admin", role: roleAdmin}
		case isRead:
			return authResult{who: "token read", role: roleRead}
		}
		a.delay(r.Context())
		return authResult{status: http.StatusUnauthorized, err: "invalid token"}
	case strings.EqualFold(scheme, "Basic") && a.users != nil:
		user, pass, ok := r.BasicAuth()
		if !ok {
			return authResult{status: http.StatusUnauthorized, err: "malformed Basic credentials"}
		}
		return a.basic(r, user, pass)
	}
	return authResult{status: http.StatusUnauthorized, err: "credentials required"}
}

// basic checks a user of the users file, through the cache.
func (a *adminAuth) basic(r *http.Request, user, pass string) authResult {
	key := sha256.Sum256([]byte(user + "\x00" + pass))
	now := time.Now()
	a.mu.Lock()
	e, ok := a.cache[key]
	a.mu.Unlock()
	if ok && now.Before(e.expires) && e.user == user {
		return authResult{who: "user " + user, role: e.role}
	}
	p, err := a.users.Authenticate(r.Context(), broker.Credentials{Login: user, Passcode: pass, RemoteAddr: r.RemoteAddr})
	if err != nil {
		a.delay(r.Context())
		return authResult{status: http.StatusUnauthorized, err: "invalid user or password"}
	}
	role := roleNone
	switch {
	case slices.Contains(p.Roles, userRoleAdmin):
		role = roleAdmin
	case slices.Contains(p.Roles, userRoleMonitor):
		role = roleRead
	default:
		return authResult{who: "user " + user, status: http.StatusForbidden, err: "user has neither role admin nor role monitor"}
	}
	a.mu.Lock()
	if len(a.cache) >= maxBasicCache {
		clear(a.cache)
	}
	a.cache[key] = basicEntry{user: user, role: role, expires: now.Add(basicCacheFor)}
	a.mu.Unlock()
	return authResult{who: "user " + user, role: role}
}

// loopbackHost says whether a Host header names this machine: localhost
// or a loopback address, with or without a port.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// crossSite says why a request that changes something came from another
// site's page, or "": the browser's Sec-Fetch-Site, or an Origin that is
// not this listener's. Clients that are not browsers send neither.
func crossSite(r *http.Request) string {
	switch r.Header.Get("Sec-Fetch-Site") {
	case "", "same-origin", "none":
	default:
		return "Sec-Fetch-Site " + r.Header.Get("Sec-Fetch-Site")
	}
	if o := r.Header.Get("Origin"); o != "" {
		u, err := url.Parse(o)
		if err != nil || !strings.EqualFold(u.Host, r.Host) {
			return "Origin " + o + " is not " + r.Host
		}
	}
	return ""
}

// guard runs h for requests with at least role need.
func (a *adminAPI) guard(need adminRole, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if why := crossSite(r); why != "" {
				a.log.Info("admin action refused", "remote", r.RemoteAddr, "path", r.URL.Path, "reason", "cross-site request: "+why)
				writeError(w, http.StatusForbidden, "cross-site request refused ("+why+")")
				return
			}
		}
		res := a.auth.check(r)
		if res.status == http.StatusUnauthorized {
			// Two fields, not `Basic realm="stompbox admin", Bearer` in one
			// (the same challenges for RFC 9110): Chromium rejects a Basic
			// challenge followed by a bare token in its field and would not
			// prompt the console's user for a password.
			w.Header().Set("WWW-Authenticate", `Basic realm="stompbox admin"`)
			w.Header().Add("WWW-Authenticate", "Bearer")
		}
		if res.status != 0 {
			a.log.Debug("admin API request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "status", res.status, "reason", res.err)
			writeError(w, res.status, res.err)
			return
		}
		if res.role < need {
			msg := "role " + res.role.String() + " may not do this; it needs role admin"
			if !a.auth.configured() {
				msg = errNoAdminCredentials
			}
			a.log.Info("admin action refused", "who", res.who, "path", r.URL.Path, "reason", msg)
			writeError(w, http.StatusForbidden, msg)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), whoKey{}, res.who)))
	})
}

// whoKey is the request context key of who made it (logs).
type whoKey struct{}

func whoOf(r *http.Request) string {
	who, _ := r.Context().Value(whoKey{}).(string)
	return who
}

// isLoopback says whether remote ("ip:port") is a loopback address.
func isLoopback(remote string) bool {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}
