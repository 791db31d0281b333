package server

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stompbox/stompbox/wsadapter"
)

// upgradeStatus asks the listener at addr for an upgrade whose Host header
// is host (the URL's: what a browser sends for a name that resolved to
// addr) with origin ("" for none), over TLS when tlsCfg is set, and
// returns the status: 101 when upgraded.
func upgradeStatus(t *testing.T, addr, host, origin string, tlsCfg *tls.Config) int {
	t.Helper()
	d := ws.Dialer{
		Protocols: []string{"v12.stomp"},
		TLSConfig: tlsCfg,
		NetDial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return dialer(ipA).DialContext(ctx, network, addr)
		},
	}
	if origin != "" {
		d.Header = ws.HandshakeHeaderHTTP(http.Header{"Origin": {origin}})
	}
	scheme := "ws://"
	if tlsCfg != nil {
		scheme = "wss://"
	}
	ctx, cancel := shutdownContext()
	defer cancel()
	conn, _, _, err := d.Dial(ctx, scheme+host+"/ws")
	var se ws.StatusError
	switch {
	case err == nil:
		_ = conn.Close()
		return http.StatusSwitchingProtocols
	case errors.As(err, &se):
		return int(se)
	}
	t.Fatalf("upgrade with Host %s: %v", host, err)
	return 0
}

// The default origin policy (no allowlist): an Origin is accepted only
// when it is the request's own origin (the listener's scheme, the Host's
// name and port) and that Host is loopback or listed in AllowedHosts. DNS
// rebinding (a foreign name that now resolves to the broker, so Host and
// Origin agree) is refused, and so is an https page on the http listener.
// An allowlist decides alone, as before; a client without Origin is
// accepted either way.
func TestUpgradeOriginAndHost(t *testing.T) {
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := &tls.Config{RootCAs: tc.pool, ServerName: "127.0.0.1"}
	servers := map[string]struct{ plain, secure string }{}
	for _, policy := range []string{"default", "hosts", "list"} {
		var cfg Config
		switch policy {
		case "hosts":
			cfg.WebSocket = wsadapter.Config{AllowedHosts: []string{"chat.example", "pinned.example:8443"}}
		case "list":
			cfg.WebSocket = wsadapter.Config{AllowedOrigins: []string{"https://app.example"}}
		}
		_, wssURL, srv := startTLSServer(t, cert, cfg)
		_, wsURL := startWebServerOn(t, srv)
		servers[policy] = struct{ plain, secure string }{hostOf(wsURL), strings.TrimSuffix(strings.TrimPrefix(wssURL, "wss://"), "/ws")}
	}
	tests := []struct {
		name, policy string
		secure       bool
		host, origin string // "P" stands for the listener's port
		status       int
	}{
		{"loopback address", "default", false, "127.0.0.1:P", "http://127.0.0.1:P", 101},
		{"localhost", "default", false, "localhost:P", "http://localhost:P", 101},
		{"localhost upper case", "default", false, "LOCALHOST:P", "http://localhost:P", 101},
		{"IPv6 loopback", "default", false, "[::1]:P", "http://[::1]:P", 101},
		{"default port both sides", "default", false, "localhost", "http://localhost:80", 101},
		{"DNS rebinding", "default", false, "evil.example:P", "http://evil.example:P", 403},
		{"DNS rebinding, default port", "default", false, "evil.example", "http://evil.example", 403},
		{"https origin on the http listener", "default", false, "127.0.0.1:P", "https://127.0.0.1:P", 403},
		{"other port", "default", false, "127.0.0.1:P", "http://127.0.0.1:1", 403},
		{"other host", "default", false, "127.0.0.1:P", "http://localhost:P", 403},
		{"opaque origin", "default", false, "127.0.0.1:P", "null", 403},
		{"no Origin, foreign Host", "default", false, "evil.example:P", "", 101},
		{"https origin on the https listener", "default", true, "127.0.0.1:P", "https://127.0.0.1:P", 101},
		{"http origin on the https listener", "default", true, "127.0.0.1:P", "http://127.0.0.1:P", 403},
		{"rebinding on the https listener", "default", true, "evil.example:P", "https://evil.example:P", 403},
		{"allowed host, any port", "hosts", false, "chat.example:P", "http://chat.example:P", 101},
		{"allowed host over https", "hosts", true, "chat.example:P", "https://chat.example:P", 101},
		{"allowed host, its port", "hosts", false, "pinned.example:8443", "http://pinned.example:8443", 101},
		{"allowed host, another port", "hosts", false, "pinned.example:P", "http://pinned.example:P", 403},
		{"allowed host, origin of another", "hosts", false, "chat.example:P", "http://evil.example:P", 403},
		{"loopback beside allowed hosts", "hosts", false, "127.0.0.1:P", "http://127.0.0.1:P", 101},
		{"unlisted host beside allowed hosts", "hosts", false, "evil.example:P", "http://evil.example:P", 403},
		{"allowlist: listed, any Host", "list", false, "evil.example:P", "https://app.example", 101},
		{"allowlist: own origin not listed", "list", false, "127.0.0.1:P", "http://127.0.0.1:P", 403},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, cfg := servers[tt.policy].plain, (*tls.Config)(nil)
			if tt.secure {
				addr, cfg = servers[tt.policy].secure, tlsCfg
			}
			_, port, _ := net.SplitHostPort(addr)
			host := strings.ReplaceAll(tt.host, ":P", ":"+port)
			origin := strings.ReplaceAll(tt.origin, ":P", ":"+port)
			if got := upgradeStatus(t, addr, host, origin, cfg); got != tt.status {
				t.Errorf("Host %s, Origin %q: %d, want %d", host, origin, got, tt.status)
			}
		})
	}
}
