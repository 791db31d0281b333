package server

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"
)

// The PROXY protocol (HAProxy's proxy-protocol.txt, versions 1 and 2): a
// load balancer that forwards a TCP connection first writes one header
// naming the client it came from. Only trusted peers may send one
// (Config.TrustedProxies), and only on a listener that asks for it
// (Config.ProxyProtocol, ProxyProtocolTLS): anyone else could claim any
// address.

const (
	// proxyV1Prefix opens a version 1 (text) header.
	proxyV1Prefix = "PROXY "
	// proxyV2Signature opens a version 2 (binary) header.
	proxyV2Signature = "\r\n\r\n\x00\r\nQUIT\n"
)

const (
	// proxyV1MaxLen is the longest version 1 header, CRLF included (the
	// specification's own bound: "PROXY UNKNOWN" with two IPv6 addresses).
	proxyV1MaxLen = 107
	// proxyV2MaxLen bounds what follows a version 2 header's fixed 16
	// bytes (addresses and TLVs). The format allows 65535; load balancers
	// send well under 1 KiB (addresses, a connection id, TLS details), so
	// more is refused rather than buffered.
	proxyV2MaxLen = 4096
	// proxyV2Fixed is the fixed part of a version 2 header.
	proxyV2Fixed = 16
)

var (
	// errProxyIncomplete: the bytes so far are a strict prefix of a header
	// that may still turn out valid; read more.
	errProxyIncomplete = errors.New("server: PROXY header incomplete")
	// errProxyMalformed is wrapped by every refusal of a header.
	errProxyMalformed = errors.New("server: malformed PROXY header")
)

// proxyHeader is what a PROXY header says about its connection.
type proxyHeader struct {
	// source is the client's address, or invalid when the header names no
	// IP client (v2 LOCAL, the load balancer's own health check; v1
	// UNKNOWN; v2 UNSPEC or UNIX families): then the socket's peer is the
	// client, as the specification asks.
	source netip.AddrPort
}

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errProxyMalformed, fmt.Sprintf(format, args...))
}

// parseProxyHeader parses the PROXY header at the start of b and returns
// it with its length in bytes. It returns errProxyIncomplete while b is a
// strict prefix of what may be a valid header, and an error wrapping
// errProxyMalformed as soon as b cannot be one. It never reads past b,
// never retains it and never panics (FuzzProxyHeader).
func parseProxyHeader(b []byte) (proxyHeader, int, error) {
	switch {
	case len(b) == 0:
		return proxyHeader{}, 0, errProxyIncomplete
	case b[0] == proxyV1Prefix[0]:
		return parseProxyV1(b)
	case b[0] == proxyV2Signature[0]:
		return parseProxyV2(b)
	}
	return proxyHeader{}, 0, malformed("the connection does not start with a PROXY header")
}

// parseProxyV1 parses "PROXY TCP4|TCP6 src dst sport dport\r\n" or
// "PROXY UNKNOWN ...\r\n".
func parseProxyV1(b []byte) (proxyHeader, int, error) {
	if n := min(len(b), len(proxyV1Prefix)); string(b[:n]) != proxyV1Prefix[:n] {
		return proxyHeader{}, 0, malformed("version 1 header does not start with %q", proxyV1Prefix)
	}
	end := bytes.IndexByte(b[:min(len(b), proxyV1MaxLen)], '\n')
	if end < 0 {
		if len(b) >= proxyV1MaxLen {
			return proxyHeader{}, 0, malformed("version 1 header longer than %d bytes", proxyV1MaxLen)
		}
		return proxyHeader{}, 0, errProxyIncomplete
	}
	if end < len(proxyV1Prefix) || b[end-1] != '\r' {
		return proxyHeader{}, 0, malformed("version 1 header does not end with CRLF")
	}
	fields := bytes.Split(b[len(proxyV1Prefix):end-1], []byte{' '})
	n := end + 1
	switch string(fields[0]) {
	case "UNKNOWN":
		// "the receiver must ignore anything presented before the CRLF"
		return proxyHeader{}, n, nil
	case "TCP4", "TCP6":
	default:
		return proxyHeader{}, 0, malformed("version 1 protocol %q is not TCP4, TCP6 or UNKNOWN", fields[0])
	}
	if len(fields) != 5 {
		return proxyHeader{}, 0, malformed("version 1 header has %d fields, want 5", len(fields))
	}
	v4 := string(fields[0]) == "TCP4"
	var addrs [2]netip.Addr
	for i := range addrs {
		ip, err := netip.ParseAddr(string(fields[1+i]))
		if err != nil || ip.Zone() != "" || ip.Is4() != v4 {
			return proxyHeader{}, 0, malformed("version 1 address %q is not an %s address", fields[1+i], fields[0])
		}
		addrs[i] = ip
	}
	var ports [2]uint16
	for i := range ports {
		p, ok := parsePort(fields[3+i])
		if !ok {
			return proxyHeader{}, 0, malformed("version 1 port %q is invalid", fields[3+i])
		}
		ports[i] = p
	}
	return proxyHeader{source: netip.AddrPortFrom(addrs[0].Unmap(), ports[0])}, n, nil
}

// parsePort is a decimal 0-65535 without sign or leading zero.
func parsePort(b []byte) (uint16, bool) {
	if len(b) == 0 || len(b) > 5 || (b[0] == '0' && len(b) > 1) {
		return 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseUint(string(b), 10, 16)
	return uint16(n), err == nil
}

// The version 2 command, address family and transport bytes.
const (
	proxyV2Local      = 0x20 // version 2, LOCAL
	proxyV2Proxy      = 0x21 // version 2, PROXY
	proxyV2Unspec     = 0x00
	proxyV2TCP4       = 0x11 // AF_INET, STREAM
	proxyV2TCP6       = 0x21 // AF_INET6, STREAM
	proxyV2UnixStream = 0x31 // AF_UNIX, STREAM
)

// parseProxyV2 parses the binary header: signature, version and command,
// family and transport, a big-endian length, then that many bytes
// (addresses, then TLVs, which are skipped).
func parseProxyV2(b []byte) (proxyHeader, int, error) {
	sig := min(len(b), len(proxyV2Signature))
	if string(b[:sig]) != proxyV2Signature[:sig] {
		return proxyHeader{}, 0, malformed("version 2 signature mismatch")
	}
	if len(b) < proxyV2Fixed {
		if len(b) > 12 && b[12] != proxyV2Local && b[12] != proxyV2Proxy {
			return proxyHeader{}, 0, malformed("version 2 version/command byte %#x", b[12])
		}
		return proxyHeader{}, 0, errProxyIncomplete
	}
	verCmd, family := b[12], b[13]
	if verCmd != proxyV2Local && verCmd != proxyV2Proxy {
		return proxyHeader{}, 0, malformed("version 2 version/command byte %#x", verCmd)
	}
	length := int(binary.BigEndian.Uint16(b[14:16]))
	if length > proxyV2MaxLen {
		return proxyHeader{}, 0, malformed("version 2 header of %d bytes (at most %d)", length, proxyV2MaxLen)
	}
	n := proxyV2Fixed + length
	if len(b) < n {
		return proxyHeader{}, 0, errProxyIncomplete
	}
	body := b[proxyV2Fixed:n]
	if verCmd == proxyV2Local {
		// "the receiver must accept this connection as valid and must use
		// the real connection endpoints", whatever the family says.
		return proxyHeader{}, n, nil
	}
	var src netip.AddrPort
	switch family {
	case proxyV2TCP4:
		if len(body) < 12 {
			return proxyHeader{}, 0, malformed("version 2 TCP4 addresses need 12 bytes, got %d", len(body))
		}
		src = netip.AddrPortFrom(netip.AddrFrom4([4]byte(body[0:4])), binary.BigEndian.Uint16(body[8:10]))
	case proxyV2TCP6:
		if len(body) < 36 {
			return proxyHeader{}, 0, malformed("version 2 TCP6 addresses need 36 bytes, got %d", len(body))
		}
		src = netip.AddrPortFrom(netip.AddrFrom16([16]byte(body[0:16])).Unmap(), binary.BigEndian.Uint16(body[32:34]))
	case proxyV2Unspec, proxyV2UnixStream:
		// No IP client: the peer stands for it.
	default:
		return proxyHeader{}, 0, malformed("version 2 family/transport %#x is not a stream stompbox serves", family)
	}
	return proxyHeader{source: src}, n, nil
}

// readProxyHeader reads the PROXY header nc must start with, by timeout.
// It returns the header and the bytes read past it (the start of the
// client's own data, to be read first), or an error: a malformed header,
// or none in time.
func readProxyHeader(nc net.Conn, timeout time.Duration) (proxyHeader, []byte, error) {
	if err := nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return proxyHeader{}, nil, err
	}
	buf := make([]byte, 0, 256)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, make([]byte, cap(buf))...)[:len(buf)]
		}
		// Never read more than the longest header could need: what follows
		// belongs to the client, and is kept for it, but need not be big.
		limit := min(cap(buf), proxyV2Fixed+proxyV2MaxLen)
		k, err := nc.Read(buf[len(buf):limit])
		buf = buf[:len(buf)+k]
		hdr, n, perr := parseProxyHeader(buf)
		switch {
		case perr == nil:
			if err := nc.SetReadDeadline(time.Time{}); err != nil {
				return proxyHeader{}, nil, err
			}
			var rest []byte
			if n < len(buf) {
				rest = bytes.Clone(buf[n:])
			}
			return hdr, rest, nil
		case !errors.Is(perr, errProxyIncomplete):
			return proxyHeader{}, nil, perr
		case err != nil:
			return proxyHeader{}, nil, fmt.Errorf("server: reading the PROXY header: %w", err)
		case len(buf) >= proxyV2Fixed+proxyV2MaxLen:
			return proxyHeader{}, nil, malformed("no complete header in %d bytes", len(buf))
		}
	}
}
