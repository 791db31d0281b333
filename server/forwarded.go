package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops bounds how many addresses of a forwarding chain are
// looked at: a chain is walked from the right, and a real one is a few
// proxies long.
const maxForwardedHops = 32

// trustedProxies is Config.TrustedProxies: the peers whose word on the
// client's address is taken.
type trustedProxies []netip.Prefix

// contains reports whether ip is one of the trusted proxies.
func (t trustedProxies) contains(ip netip.Addr) bool {
	ip = ip.Unmap().WithZone("")
	for _, p := range t {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// peerIP is the IP of a socket address ("ip:port"); invalid for anything
// else (a unix socket).
func peerIP(addr net.Addr) netip.Addr {
	if addr == nil {
		return netip.Addr{}
	}
	ap, err := netip.ParseAddrPort(addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap().WithZone("")
}

// forwardedClient is the client address a request from the trusted proxy
// peer vouches for: the right-most address of its forwarding chain that is
// not itself a trusted proxy (each proxy appends the address it got the
// request from, so everything left of the first untrusted hop may be the
// client's invention). The chain comes from Forwarded (RFC 7239, its for=
// parameters) or X-Forwarded-For, every field line of the header in
// order. ok is false, and the peer stands for the client, when neither
// header is present, when both are (a proxy sets one of them; the other
// then came from the client, and which is which cannot be told), or when
// the walk meets something that is not an address ("unknown", an
// obfuscated identifier, garbage) before an untrusted hop: what a trusted
// proxy wrote there cannot be read, and what lies left of it cannot be
// trusted.
func (t trustedProxies) forwardedClient(h http.Header) (netip.AddrPort, bool) {
	fwd, xff := h.Values("Forwarded"), h.Values("X-Forwarded-For")
	if (len(fwd) == 0) == (len(xff) == 0) {
		return netip.AddrPort{}, false
	}
	var hops []string
	if len(fwd) > 0 {
		hops = forwardedFor(fwd)
	} else {
		hops = listElements(xff)
	}
	var last netip.AddrPort // the left-most trusted hop walked so far
	for i := len(hops) - 1; i >= 0 && i >= len(hops)-maxForwardedHops; i-- {
		ap, ok := parseHop(hops[i])
		if !ok {
			return netip.AddrPort{}, false
		}
		if !t.contains(ap.Addr()) {
			return ap, true
		}
		last = ap
	}
	// Every hop walked is a trusted proxy (or the chain is longer than
	// walked): the left-most one reached is the best known client.
	return last, last.IsValid()
}

// listElements splits comma-separated header values into trimmed elements.
func listElements(values []string) []string {
	var out []string
	for _, v := range values {
		for e := range strings.SplitSeq(v, ",") {
			out = append(out, strings.TrimSpace(e))
		}
	}
	return out
}

// forwardedFor extracts the for= parameter of each forwarded-element of
// RFC 7239 Forwarded values, in order; an element without one gives ""
// (not an address). Quoted strings are unquoted; a quoted comma or
// semicolon does not split.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		elems, ok := splitQuoted(v, ',')
		if !ok {
			// An unterminated quote swallows what follows it on the line,
			// which may be the element a trusted proxy appended: the whole
			// line is unreadable, not the client's to choose.
			out = append(out, "")
			continue
		}
		for _, elem := range elems {
			forValue := ""
			pairs, _ := splitQuoted(elem, ';') // elem's quotes are balanced
			for _, pair := range pairs {
				name, value, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(strings.TrimSpace(name), "for") {
					forValue = unquote(strings.TrimSpace(value))
				}
			}
			out = append(out, forValue)
		}
	}
	return out
}

// splitQuoted splits s at sep outside double-quoted strings (RFC 7230
// quoted-string, with backslash escapes).
// ok is false when a quoted string or an escape is left open at the end.
func splitQuoted(s string, sep byte) (parts []string, ok bool) {
	var out []string
	quoted, escaped, start := false, false, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case escaped:
			escaped = false
		case quoted && c == '\\':
			escaped = true
		case c == '"':
			quoted = !quoted
		case !quoted && c == sep:
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:]), !quoted && !escaped
}

// unquote removes the quotes and escapes of a quoted-string; anything else
// is returned as is.
func unquote(s string) string {
	if len(s) < 2 || s[0] != '"' || s[len(s)-1] != '"' {
		return s
	}
	var b strings.Builder
	for i := 1; i < len(s)-1; i++ {
		if s[i] == '\\' && i+1 < len(s)-1 {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// parseHop reads one hop of a chain: an IPv4 or IPv6 address, with or
// without a port ("192.0.2.1", "192.0.2.1:4711", "2001:db8::1",
// "[2001:db8::1]", "[2001:db8::1]:4711"). Zones, names, "unknown" and
// RFC 7239 obfuscated identifiers ("_hidden") are not addresses.
func parseHop(s string) (netip.AddrPort, bool) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		if ap.Addr().Zone() != "" {
			return netip.AddrPort{}, false
		}
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
		if ip, err := netip.ParseAddr(s); err == nil && ip.Is6() && ip.Zone() == "" {
			return netip.AddrPortFrom(ip.Unmap(), 0), true
		}
		return netip.AddrPort{}, false
	}
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ip.Unmap(), 0), true
}

// forwarded says whether a request came from a trusted proxy and, if its
// headers name one, the client it forwards (nil: the proxy stands for the
// client, as for its own requests without forwarding headers). unreadable
// says the request carries forwarding headers that name no client (both
// headers, garbage, an unterminated quote): such a request is refused
// rather than charged to the proxy's own address, which a client could
// otherwise exhaust for everyone behind the proxy. Headers from any other
// peer are ignored.
func (s *Server) forwarded(r *http.Request) (fromProxy bool, client net.Addr, unreadable bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil || !s.trusted.contains(ap.Addr()) {
		return false, nil, false
	}
	if c, ok := s.trusted.forwardedClient(r.Header); ok {
		return true, net.TCPAddrFromAddrPort(c), false
	}
	hasHeaders := len(r.Header.Values("Forwarded")) > 0 || len(r.Header.Values("X-Forwarded-For")) > 0
	return true, nil, hasHeaders
}
