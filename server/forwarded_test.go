package server

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// The client address a trusted proxy's headers name: the right-most hop
// that is not a trusted proxy, so that what a client wrote itself (left of
// the hops the proxies appended) is never believed.
func TestForwardedClient(t *testing.T) {
	trusted := trustedProxies{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:ffff::/48")}
	tests := []struct {
		name string
		xff  []string // X-Forwarded-For field lines
		fwd  []string // Forwarded field lines
		want string   // "" : none (the peer stands for the client)
	}{
		{"no header", nil, nil, ""},
		{"one hop", []string{"203.0.113.7"}, nil, "203.0.113.7:0"},
		{"with port", []string{"203.0.113.7:4711"}, nil, "203.0.113.7:4711"},
		{"spoofed chain: client wrote the left part", []string{"1.2.3.4, 198.51.100.9"}, nil, "198.51.100.9:0"},
		{"inner proxies skipped", []string{"1.2.3.4, 198.51.100.9, 10.1.1.1, 10.2.2.2"}, nil, "198.51.100.9:0"},
		{"several field lines, in order", []string{"1.2.3.4", "198.51.100.9, 10.1.1.1"}, nil, "198.51.100.9:0"},
		{"all trusted: the left-most", []string{"10.9.9.9, 10.1.1.1"}, nil, "10.9.9.9:0"},
		{"IPv6", []string{"2001:db8::1"}, nil, "[2001:db8::1]:0"},
		{"IPv6 in brackets with port", []string{"[2001:db8::1]:443"}, nil, "[2001:db8::1]:443"},
		{"IPv6 in brackets", []string{"[2001:db8::1]"}, nil, "[2001:db8::1]:0"},
		{"IPv6 trusted hop skipped", []string{"2001:db8::1, 2001:db8:ffff::5"}, nil, "[2001:db8::1]:0"},
		{"IPv4-mapped", []string{"::ffff:203.0.113.7"}, nil, "203.0.113.7:0"},
		{"garbage at the right: unreadable", []string{"203.0.113.7, not-an-ip"}, nil, ""},
		{"garbage left of the client: ignored", []string{"<script>, 203.0.113.7"}, nil, "203.0.113.7:0"},
		{"garbage behind trusted hops", []string{"bogus, 10.1.1.1"}, nil, ""},
		{"empty element", []string{"203.0.113.7, "}, nil, ""},
		{"zone", []string{"fe80::1%eth0"}, nil, ""},
		{"Forwarded", nil, []string{"for=203.0.113.7"}, "203.0.113.7:0"},
		{"Forwarded, case and spaces", nil, []string{"For=203.0.113.7 ;proto=https"}, "203.0.113.7:0"},
		{"Forwarded chain", nil, []string{"for=1.2.3.4, for=198.51.100.9;by=10.0.0.1, for=10.1.1.1"}, "198.51.100.9:0"},
		{"Forwarded IPv6 quoted with port", nil, []string{`for="[2001:db8:cafe::17]:4711"`}, "[2001:db8:cafe::17]:4711"},
		{"Forwarded quoted separators", nil, []string{`for="1.2.3.4, for=5.6.7.8";proto=http`}, ""},
		{"Forwarded several field lines", nil, []string{"for=1.2.3.4", "for=198.51.100.9"}, "198.51.100.9:0"},
		{"Forwarded obfuscated", nil, []string{"for=_hidden"}, ""},
		{"Forwarded unknown", nil, []string{"for=unknown"}, ""},
		{"Forwarded element without for", nil, []string{"for=1.2.3.4, proto=https"}, ""},
		{"both headers: neither believed", []string{"203.0.113.7"}, []string{"for=198.51.100.9"}, ""},
		{"Forwarded unterminated quote swallows the proxy's element", nil, []string{`for=6.6.6.6;by=", for=5.6.7.8`}, ""},
		{"Forwarded unterminated quote on an earlier line", nil, []string{`for=6.6.6.6;by="`, "for=198.51.100.9"}, "198.51.100.9:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.xff {
				h.Add("X-Forwarded-For", v)
			}
			for _, v := range tt.fwd {
				h.Add("Forwarded", v)
			}
			ap, ok := trusted.forwardedClient(h)
			got := ""
			if ok {
				got = ap.String()
			}
			if got != tt.want {
				t.Errorf("got %q (ok %v), want %q", got, ok, tt.want)
			}
		})
	}
	long := strings.Repeat("10.1.1.1, ", 1000) + "10.2.2.2"
	if ap, ok := trusted.forwardedClient(http.Header{"X-Forwarded-For": {long}}); !ok || ap.Addr() != netip.MustParseAddr("10.1.1.1") {
		t.Errorf("a chain of 1001 trusted hops: %v %v, want a trusted hop within the walk bound", ap, ok)
	}
}

// remoteLog records the remote address of every CONNECT: what the session
// was created with.
type remoteLog struct {
	mu      sync.Mutex
	remotes []string // guarded by mu
}

func (a *remoteLog) Authenticate(_ context.Context, c broker.Credentials) (*broker.Principal, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.remotes = append(a.remotes, c.RemoteAddr)
	return &broker.Principal{Name: "anyone"}, nil
}

// seen reports whether a CONNECT came from remote.
func (a *remoteLog) seen(remote string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return slices.Contains(a.remotes, remote)
}

var errNoRemote = errors.New("no such remote")

// waitRemote waits until a CONNECT from remote has been authenticated.
func (a *remoteLog) waitRemote(remote string) error {
	for range 200 {
		if a.seen(remote) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return errNoRemote
}

// Behind a trusted proxy (127.0.0.2 here), the per-address limits apply to
// the address its X-Forwarded-For names: two clients behind it have their
// own slots, and the session's remote address is the client's. The same
// header from an untrusted peer (127.0.0.1) is ignored.
func TestForwardedClientLimits(t *testing.T) {
	auth := &remoteLog{}
	srv, url := startWebServer(t, Config{
		MaxConnectionsPerIP: 1, ConnectionRatePerIP: -1,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix(ipB + "/32")},
		Broker:         brokerWithAuth(auth),
	})
	admin := startAdmin(t, srv.Server)
	xff := func(client string) http.Header { return http.Header{"X-Forwarded-For": {"6.6.6.6, " + client}} }

	one := mustUpgrade(t, url, xff("203.0.113.1"), ipB)
	one.connect()
	two := mustUpgrade(t, url, xff("203.0.113.2"), ipB)
	two.connect()
	if err := auth.waitRemote("203.0.113.1:0"); err != nil {
		t.Errorf("session of the first client: %v (got %v)", err, auth.remotes)
	}
	if err := auth.waitRemote("203.0.113.2:0"); err != nil {
		t.Errorf("session of the second client: %v (got %v)", err, auth.remotes)
	}
	mustRefuseUpgrade(t, url, xff("203.0.113.1"), ipB, http.StatusServiceUnavailable, "per-address connection limit")
	waitAdmitted(t, srv.Server, 2) // the refused upgrade's connection is gone

	// The proxy's own keep-alive connections count against the total only.
	for range 3 {
		c := dialHTTP(t, hostOf(url), ipB, nil)
		if status, _ := c.get("/", "X-Forwarded-For: 203.0.113.1"); status != http.StatusNotFound {
			t.Fatalf("GET / (no page): %d, want 404", status)
		}
	}

	// Forwarding headers that name no client are refused, not charged to
	// the proxy's own address.
	mustRefuseUpgrade(t, url, http.Header{"X-Forwarded-For": {"203.0.113.5"}, "Forwarded": {"for=203.0.113.6"}}, ipB,
		http.StatusBadRequest, "name no client")

	// An untrusted peer's header is ignored: it is one address.
	mine := mustUpgrade(t, url, xff("203.0.113.3"), ipA)
	mine.connect()
	if err := auth.waitRemote("203.0.113.3:0"); err == nil {
		t.Error("an untrusted peer's X-Forwarded-For became the session's remote")
	}
	mustRefuseUpgrade(t, url, xff("203.0.113.4"), ipA, http.StatusServiceUnavailable, "per-address connection limit")

	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, refusedSeries(map[string]int{"per_ip": 2}, map[string]int{"limit": 1}))
}
