package wsadapter

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
)

func TestValidOrigin(t *testing.T) {
	tests := []struct {
		entry string
		ok    bool
	}{
		{"*", true},
		{"https://app.example.com", true},
		{"HTTPS://App.Example.COM", true},
		{"http://127.0.0.1:8080", true},
		{"http://[::1]:8080", true},
		{"https://*.example.com", true},
		{"https://*.example.com:8443", true},
		{"https://*.localhost", true},
		{"chrome-extension://abcdef", true},
		{"", false},
		{"app.example.com", false},                    // no scheme
		{"https://", false},                           // no host
		{"https://app.example.com/", false},           // trailing slash: never in an Origin
		{"https://app.example.com/path", false},       // path
		{"https://app.example.com?x=1", false},        // query
		{"https://user@app.example.com", false},       // userinfo
		{"https://app.example.com:", false},           // empty port
		{"https://app.example.com:0", false},          // port out of range
		{"https://app.example.com:65536", false},      // port out of range
		{"https://app.example.com:+80", false},        // not digits
		{"https://app.example.com:http", false},       // not digits
		{"https://*", false},                          // wildcard without a domain
		{"https://*.", false},                         // empty label
		{"https://a.*.example.com", false},            // '*' not first
		{"https://*example.com", false},               // '*' not a whole label
		{"https://**.example.com", false},             // two stars
		{"https://*.*.example.com", false},            // two wildcards
		{"https://*.0.0.1", false},                    // wildcard over an IP
		{"https://*.[::1]", false},                    // wildcard over an IP
		{"https://app..example.com", false},           // empty label
		{"https://bücher.example", false},             // IDN not in xn-- form
		{"https://[::1", false},                       // unterminated literal
		{"https://[::1]x", false},                     // junk after literal
		{"https://[fe80::1%25eth0]", false},           // zone
		{"1https://app.example.com", false},           // scheme must start with a letter
		{"ht tp://app.example.com", false},            // space in scheme
		{"https://app example.com", false},            // space in host
		{"https://" + strings.Repeat("a", 64), false}, // label too long
	}
	for _, tt := range tests {
		t.Run(tt.entry, func(t *testing.T) {
			err := ValidOrigin(tt.entry)
			if (err == nil) != tt.ok {
				t.Fatalf("ValidOrigin(%q) = %v, want ok=%v", tt.entry, err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "origin") && tt.entry != "" {
				t.Errorf("error %q does not say what is wrong", err)
			}
		})
	}
}

func TestOriginListed(t *testing.T) {
	tests := []struct {
		allowed []string
		origin  string
		ok      bool
	}{
		// Exact entries: scheme, host, port, nothing else.
		{[]string{"https://app.example.com"}, "https://app.example.com", true},
		{[]string{"https://app.example.com"}, "https://APP.example.com", true}, // host is case-insensitive
		{[]string{"HTTPS://APP.EXAMPLE.COM"}, "https://app.example.com", true},
		{[]string{"https://app.example.com"}, "https://app.example.com:443", true}, // default port is no port
		{[]string{"https://app.example.com:443"}, "https://app.example.com", true},
		{[]string{"https://app.example.com"}, "http://app.example.com", false},
		{[]string{"https://app.example.com"}, "https://app.example.com:8443", false},
		{[]string{"https://app.example.com"}, "https://a.app.example.com", false},
		{[]string{"https://app.example.com"}, "https://app.example.com.evil.com", false},
		{[]string{"https://app.example.com"}, "https://evilapp.example.com", false},
		{[]string{"http://127.0.0.1:8080"}, "http://127.0.0.1:8080", true},
		{[]string{"http://127.0.0.1:8080"}, "http://127.0.0.1:8081", false},
		{[]string{"http://[::1]:8080"}, "http://[0:0::1]:8080", true}, // one spelling per address
		// Wildcards: strict subdomains at any depth.
		{[]string{"https://*.example.com"}, "https://a.example.com", true},
		{[]string{"https://*.example.com"}, "https://a.b.example.com", true},
		{[]string{"https://*.example.com"}, "https://A.Example.Com", true},
		{[]string{"https://*.example.com"}, "https://example.com", false},
		{[]string{"https://*.example.com"}, "https://evil-example.com", false},
		{[]string{"https://*.example.com"}, "https://aexample.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com.evil.com", false},
		{[]string{"https://*.example.com"}, "http://a.example.com", false},
		{[]string{"https://*.example.com"}, "https://a.example.com:8443", false},
		{[]string{"https://*.example.com"}, "https://.example.com", false},
		{[]string{"https://*.example.com:8443"}, "https://a.example.com:8443", true},
		{[]string{"https://*.example.com:8443"}, "https://a.example.com", false},
		// Lists, "*", and what a browser may send that is not an origin.
		{[]string{"https://a.example", "https://*.b.example"}, "https://x.b.example", true},
		{[]string{"https://a.example", "https://*.b.example"}, "https://b.example", false},
		{[]string{"*"}, "https://anything.example", true},
		{[]string{"*"}, "null", true},
		{[]string{"https://*.example.com"}, "null", false},
		{[]string{"https://*.example.com"}, "https://*.example.com", false}, // a browser never sends a pattern
		{[]string{"not an origin", "https://ok.example"}, "https://ok.example", true},
		{[]string{"not an origin"}, "not an origin", false},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.allowed, ",")+" "+tt.origin, func(t *testing.T) {
			if got := originListed(tt.origin, tt.allowed); got != tt.ok {
				t.Fatalf("originListed(%q, %q) = %v, want %v", tt.origin, tt.allowed, got, tt.ok)
			}
		})
	}
}

// FuzzOriginMatch: no input panics; a wildcard entry never matches its own
// domain and only matches strict subdomains of it; an exact entry matches
// itself and only origins that serialize the same.
func FuzzOriginMatch(f *testing.F) {
	for _, seed := range [][2]string{
		{"https://*.example.com", "https://a.example.com"},
		{"https://*.example.com", "https://example.com"},
		{"https://*.example.com", "https://evil-example.com"},
		{"https://app.example.com", "HTTPS://APP.EXAMPLE.COM:443"},
		{"http://[::1]:8080", "http://[::1]:8080"},
		{"*", "null"},
		{"https://*.a:1", "https://b.a:1"},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, entry, header string) {
		listed := originListed(header, []string{entry})
		if entry == "*" {
			if !listed {
				t.Fatalf("* does not admit %q", header)
			}
			return
		}
		p, err := parseOrigin(entry, true)
		if err != nil {
			if listed {
				t.Fatalf("invalid entry %q (%v) admits %q", entry, err, header)
			}
			return
		}
		if ValidOrigin(entry) != nil {
			t.Fatalf("parseOrigin accepts %q, ValidOrigin does not", entry)
		}
		if p.wildcard {
			bare := p
			bare.wildcard = false
			if originListed(bare.String(), []string{entry}) {
				t.Fatalf("%q admits its own domain %q", entry, bare.String())
			}
			if listed {
				o, _ := parseOrigin(header, false)
				if !strings.HasSuffix(o.host, "."+p.host) || o.scheme != p.scheme || o.port != p.port {
					t.Fatalf("%q admits %q (%+v), not a subdomain on its scheme and port", entry, header, o)
				}
			}
			return
		}
		if !originListed(entry, []string{entry}) {
			t.Fatalf("exact entry %q does not admit itself", entry)
		}
		if listed {
			o, _ := parseOrigin(header, false)
			if o != p {
				t.Fatalf("exact entry %q (%v) admits %q (%v)", entry, p, header, o)
			}
		}
	})
}

// Negotiate says which check refused an upgrade, and the HTTP status
// matches it; a request it passes is upgraded by Handshake.Upgrade.
func TestNegotiateRejectReason(t *testing.T) {
	cfg := Config{AllowedOrigins: []string{"https://*.example.com"}}
	var got chan error = make(chan error, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, err := Negotiate(w, r, cfg)
		if err == nil {
			var c *Conn
			if c, err = h.Upgrade(w, r); err == nil {
				_ = c.Close(CloseNormal, "")
			}
		}
		got <- err
	}))
	defer srv.Close()
	url := "ws" + strings.TrimPrefix(srv.URL, "http")
	tests := []struct {
		name      string
		origin    string
		protocols []string
		status    int
		reason    RejectReason
	}{
		{"foreign origin", "https://example.com", []string{"v12.stomp"}, http.StatusForbidden, RejectOrigin},
		{"foreign origin before subprotocol", "https://evil.test", []string{"mqtt"}, http.StatusForbidden, RejectOrigin},
		{"unknown subprotocol", "https://a.example.com", []string{"mqtt"}, http.StatusBadRequest, RejectSubprotocol},
		{"accepted", "https://a.b.example.com", []string{"v11.stomp"}, http.StatusSwitchingProtocols, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ws.Dialer{Protocols: tt.protocols, Header: ws.HandshakeHeaderHTTP(http.Header{"Origin": {tt.origin}})}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			conn, _, hs, err := d.Dial(ctx, url)
			status := http.StatusSwitchingProtocols
			var se ws.StatusError
			if errors.As(err, &se) {
				status = int(se)
			} else if err != nil {
				t.Fatal(err)
			} else {
				defer conn.Close()
				if hs.Protocol != "v11.stomp" {
					t.Errorf("subprotocol %q, want v11.stomp", hs.Protocol)
				}
			}
			if status != tt.status {
				t.Errorf("status %d, want %d", status, tt.status)
			}
			serverErr := <-got
			var re *RejectError
			switch {
			case tt.reason == 0 && serverErr != nil:
				t.Errorf("server: %v, want an upgrade", serverErr)
			case tt.reason != 0 && (!errors.As(serverErr, &re) || re.Reason != tt.reason || !errors.Is(serverErr, ErrRejected)):
				t.Errorf("server: %v, want a RejectError with reason %v", serverErr, tt.reason)
			}
		})
	}
}

func TestValidHost(t *testing.T) {
	for _, ok := range []string{"localhost", "127.0.0.1", "[::1]", "chat.example.com", "chat.example.com:8443", "[2001:db8::1]:443", "xn--bcher-kva.example"} {
		if err := ValidHost(ok); err != nil {
			t.Errorf("ValidHost(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "::1", "http://chat.example.com", "chat.example.com/", "*.example.com", "chat.example.com:0", "chat.example.com:70000", "chat.example.com:", "user@chat.example.com", "büch.example", "[fe80::1%eth0]"} {
		if err := ValidHost(bad); err == nil {
			t.Errorf("ValidHost(%q) accepted", bad)
		}
	}
}

// The default policy without a network: the Origin must be the request's
// own (scheme from TLS, host and port from Host) and the Host loopback or
// listed.
func TestSameOrigin(t *testing.T) {
	listed := []string{"chat.example.com", "pinned.example.com:8443", "[2001:db8::1]"}
	tests := []struct {
		host, origin string
		tls          bool
		ok           bool
	}{
		{"127.0.0.1:61614", "http://127.0.0.1:61614", false, true},
		{"127.0.0.2:61614", "http://127.0.0.2:61614", false, true}, // all of 127/8 is loopback
		{"localhost:61614", "HTTP://LocalHost:61614", false, true},
		{"[::1]:61614", "http://[0:0:0:0:0:0:0:1]:61614", false, true},
		{"localhost", "http://localhost", false, true},
		{"localhost:80", "http://localhost", false, true},
		{"localhost", "http://localhost:80", false, true},
		{"localhost:443", "https://localhost", true, true},
		{"localhost:61614", "https://localhost:61614", false, false},
		{"localhost:61614", "http://localhost:61614", true, false},
		{"localhost:61614", "ws://localhost:61614", false, false},
		{"evil.example:61614", "http://evil.example:61614", false, false},
		{"app.localhost:61614", "http://app.localhost:61614", false, false},
		{"127.1:61614", "http://127.1:61614", false, false},
		{"chat.example.com:61614", "http://chat.example.com:61614", false, true},
		{"CHAT.example.com", "https://chat.example.com", true, true},
		{"pinned.example.com:8443", "https://pinned.example.com:8443", true, true},
		{"pinned.example.com", "https://pinned.example.com", true, false},
		{"[2001:db8::1]:61614", "http://[2001:db8::1]:61614", false, true},
		{"chat.example.com:61614", "http://chat.example.com:61615", false, false},
		{"", "http://localhost", false, false},
		{"localhost:61614/x", "http://localhost:61614", false, false},
		{"localhost:61614", "null", false, false},
		{"localhost:61614", "http://localhost:61614/", false, false},
	}
	for _, tt := range tests {
		r := &http.Request{Host: tt.host, Header: http.Header{}}
		if tt.tls {
			r.TLS = &tls.ConnectionState{}
		}
		if got := sameOrigin(r, tt.origin, listed); got != tt.ok {
			t.Errorf("Host %q, Origin %q, TLS %v: %v, want %v", tt.host, tt.origin, tt.tls, got, tt.ok)
		}
	}
}
