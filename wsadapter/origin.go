package wsadapter

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
)

// An origin is an RFC 6454 tuple (scheme, host, port) in its serialized
// form, normalized so that two spellings of one origin compare equal: the
// scheme and host lower-cased (both are case-insensitive, RFC 3986 3.1 and
// 3.2.2) and the scheme's default port dropped, as a browser's Origin
// header does.
type origin struct {
	scheme string
	host   string // a DNS name, an IPv4 literal, or "[IPv6]"
	port   int    // 0: none given, or the scheme's default
	// wildcard marks an allowlist entry "scheme://*.host": it matches the
	// strict subdomains of host, never host itself.
	wildcard bool
}

// String serializes o as an Origin header would carry it.
func (o origin) String() string {
	var b strings.Builder
	b.WriteString(o.scheme)
	b.WriteString("://")
	if o.wildcard {
		b.WriteString("*.")
	}
	b.WriteString(o.host)
	if o.port != 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(o.port))
	}
	return b.String()
}

// ValidOrigin reports whether entry can be an AllowedOrigins entry: "*",
// an origin such as "https://app.example.com" or "http://127.0.0.1:8080",
// or a wildcard "https://*.example.com" (every subdomain of example.com at
// any depth, on that scheme and port, but not example.com itself). Hosts
// must be ASCII (IDNs in their xn-- form) and an entry has no path, query,
// user or trailing slash, because a browser's Origin never does: such an
// entry could never match, which is a configuration mistake worth
// reporting at load time rather than a silent refusal later.
func ValidOrigin(entry string) error {
	if entry == "*" {
		return nil
	}
	_, err := parseOrigin(entry, true)
	return err
}

// defaultPort is the port an origin's serialization leaves out for scheme
// (0: none known).
func defaultPort(scheme string) int {
	switch scheme {
	case "http", "ws":
		return 80
	case "https", "wss":
		return 443
	}
	return 0
}

// parseOrigin parses an origin; wildcard allows the "*." host prefix of
// allowlist entries (a browser never sends one).
func parseOrigin(s string, wildcard bool) (origin, error) {
	var o origin
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok {
		return o, fmt.Errorf("origin %q: want scheme://host[:port]", s)
	}
	if !validScheme(scheme) {
		return o, fmt.Errorf("origin %q: invalid scheme", s)
	}
	o.scheme = strings.ToLower(scheme)
	if i := strings.IndexAny(rest, "/?#@\\"); i >= 0 {
		return o, fmt.Errorf("origin %q: an origin is only scheme://host[:port] (no path, query, user or trailing slash)", s)
	}
	host, port := rest, ""
	if strings.HasPrefix(rest, "[") {
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return o, fmt.Errorf("origin %q: unterminated IPv6 literal", s)
		}
		host, port = rest[:end+1], rest[end+1:]
		if port != "" && port[0] != ':' {
			return o, fmt.Errorf("origin %q: junk after the IPv6 literal", s)
		}
		port = strings.TrimPrefix(port, ":")
		ip, err := netip.ParseAddr(host[1 : len(host)-1])
		if err != nil || !ip.Is6() || ip.Zone() != "" {
			return o, fmt.Errorf("origin %q: invalid IPv6 literal", s)
		}
		host = "[" + ip.String() + "]" // one spelling per address
	} else if i := strings.LastIndexByte(rest, ':'); i >= 0 {
		host, port = rest[:i], rest[i+1:]
		if port == "" {
			return o, fmt.Errorf("origin %q: empty port", s)
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || port[0] < '0' || port[0] > '9' {
			return o, fmt.Errorf("origin %q: invalid port", s)
		}
		if n != defaultPort(o.scheme) {
			o.port = n
		}
	}
	if wildcard {
		if suffix, ok := strings.CutPrefix(host, "*."); ok {
			o.wildcard = true
			host = suffix
		}
	}
	if strings.HasPrefix(host, "[") {
		if o.wildcard {
			return o, fmt.Errorf("origin %q: a wildcard needs a DNS name, not an IP address", s)
		}
		o.host = host
		return o, nil
	}
	host = strings.ToLower(host)
	if err := validHost(host); err != nil {
		return o, fmt.Errorf("origin %q: %w", s, err)
	}
	if o.wildcard && isNumericTLD(host) {
		// "*.0.0.1" would match the address 10.0.0.1: wildcards are for
		// names, and no top-level domain is all digits.
		return o, fmt.Errorf("origin %q: a wildcard needs a DNS name, not an IP address", s)
	}
	o.host = host
	return o, nil
}

// validScheme is RFC 3986's ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ).
func validScheme(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !isDigit(c) && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validHost accepts a lower-case DNS name (or IPv4 literal): dot-separated
// non-empty labels of letters, digits, '-' and '_', within DNS lengths.
// Anything else, '*' included, is refused.
func validHost(h string) error {
	if h == "" {
		return errors.New("empty host")
	}
	if len(h) > 253 {
		return errors.New("host longer than 253 bytes")
	}
	for label := range strings.SplitSeq(h, ".") {
		if label == "" {
			return errors.New("empty label in host")
		}
		if len(label) > 63 {
			return errors.New("host label longer than 63 bytes")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !isLetter(c) && !isDigit(c) && c != '-' && c != '_' {
				if c == '*' {
					return errors.New(`'*' is only allowed as a whole first label ("*.example.com")`)
				}
				return fmt.Errorf("invalid character %q in host (IDNs must be written in their xn-- form)", c)
			}
		}
	}
	return nil
}

// isNumericTLD reports whether a host's last label is all digits: an IPv4
// literal, or a suffix of one.
func isNumericTLD(h string) bool {
	last := h[strings.LastIndexByte(h, '.')+1:]
	for i := 0; i < len(last); i++ {
		if !isDigit(last[i]) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// matches reports whether the allowlist entry p admits the browser origin o.
func (p origin) matches(o origin) bool {
	if p.scheme != o.scheme || p.port != o.port || o.wildcard {
		return false
	}
	if !p.wildcard {
		return p.host == o.host
	}
	// A strict subdomain: at least one label, then a dot, then the suffix;
	// "evil-example.com" ends with "example.com" but not with ".example.com".
	n := len(o.host) - len(p.host)
	return n >= 2 && o.host[n-1] == '.' && o.host[n:] == p.host && !strings.HasPrefix(o.host, "[") && !isNumericTLD(o.host)
}

// originListed reports whether the Origin header value is admitted by the
// allowlist. An unparsable origin (including the opaque "null") is admitted
// only by "*"; unparsable entries admit nothing (ValidOrigin rejects them
// at load time).
func originListed(header string, allowed []string) bool {
	o, err := parseOrigin(header, false)
	for _, entry := range allowed {
		if entry == "*" {
			return true
		}
		if err != nil {
			continue
		}
		if p, perr := parseOrigin(entry, true); perr == nil && p.matches(o) {
			return true
		}
	}
	return false
}

// DefaultAllowedHosts is what an empty Config.AllowedHosts stands for:
// the loopback names, which the default policy accepts anyway. Listing
// them keeps the configuration explicit about what is served.
func DefaultAllowedHosts() []string { return []string{"localhost", "127.0.0.1", "[::1]"} }

// ValidHost reports whether entry can be an AllowedHosts entry: a host
// name (ASCII, IDNs in their xn-- form) or an IP address, IPv6 in
// brackets, optionally followed by ":port" ("localhost",
// "chat.example.com:8443", "[::1]").
func ValidHost(entry string) error {
	_, err := parseHostEntry(entry)
	return err
}

// parseHostEntry parses an AllowedHosts entry, or a Host header: as an
// origin of a scheme without a default port, so that the port is kept as
// written (0: none given).
func parseHostEntry(s string) (origin, error) {
	o, err := parseOrigin("host://"+s, false)
	if err != nil {
		return origin{}, errors.New("want a host name or IP address, optionally with :port (IPv6 in brackets)")
	}
	return o, nil
}

// sameOrigin is the default policy: origin is the request's own origin
// (scheme of the listener, host and port of the Host header) and that
// Host is one the broker serves: loopback, or listed in allowed.
func sameOrigin(r *http.Request, header string, allowed []string) bool {
	o, err := parseOrigin(header, false)
	if err != nil {
		return false // "null" and other opaque origins included
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if o.scheme != scheme {
		return false
	}
	host, err := parseHostEntry(r.Host)
	if err != nil || host.host != o.host {
		return false
	}
	port := host.port
	if port == defaultPort(scheme) {
		port = 0 // as the Origin's serialization leaves it out
	}
	if port != o.port {
		return false
	}
	if isLoopback(host.host) {
		return true
	}
	effective := host.port
	if effective == 0 {
		effective = defaultPort(scheme)
	}
	for _, entry := range allowed {
		e, err := parseHostEntry(entry)
		if err == nil && e.host == host.host && (e.port == 0 || e.port == effective) {
			return true
		}
	}
	return false
}

// isLoopback reports whether a normalized host names this machine:
// "localhost", or an IP address in 127.0.0.0/8 or ::1. Other names that
// may resolve to loopback are not trusted: their resolution is whatever
// their DNS says.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	return err == nil && ip.IsLoopback()
}
