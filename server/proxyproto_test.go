package server

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/frames"
)

// proxyV2 builds a version 2 header: command byte, family byte, the
// address block and TLVs (body).
func proxyV2(cmd, family byte, body []byte) []byte {
	b := append([]byte(nil), proxyV2Signature...)
	b = append(b, cmd, family, 0, 0)
	binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
	return append(b, body...)
}

// headerV2TCP4 is a PROXY TCP4 header from src:sport to 192.0.2.1:61613.
func headerV2TCP4(src string, sport uint16) []byte {
	body := make([]byte, 12)
	copy(body[0:4], netip.MustParseAddr(src).AsSlice())
	copy(body[4:8], netip.MustParseAddr("192.0.2.1").AsSlice())
	binary.BigEndian.PutUint16(body[8:], sport)
	binary.BigEndian.PutUint16(body[10:], 61613)
	return proxyV2(proxyV2Proxy, proxyV2TCP4, body)
}

// headerV2TCP6 is a PROXY TCP6 header from src:sport, with a TLV after the
// addresses.
func headerV2TCP6(src string, sport uint16) []byte {
	body := make([]byte, 36, 36+7)
	copy(body[0:16], netip.MustParseAddr(src).AsSlice())
	copy(body[16:32], netip.MustParseAddr("2001:db8::2").AsSlice())
	binary.BigEndian.PutUint16(body[32:], sport)
	binary.BigEndian.PutUint16(body[34:], 61613)
	body = append(body, 0x04, 0x00, 0x04, 'a', 'b', 'c', 'd') // PP2_TYPE_NOOP
	return proxyV2(proxyV2Proxy, proxyV2TCP6, body)
}

// The PROXY header parser: both versions, every family stompbox takes,
// and refusals that come as soon as the bytes cannot be a header.
func TestParseProxyHeader(t *testing.T) {
	tests := []struct {
		name  string
		in    []byte
		want  string // the source, "" : none (the peer stands for it)
		n     int    // bytes consumed; 0 with an error
		isErr error  // errProxyIncomplete, errProxyMalformed or nil
	}{
		{"v1 TCP4", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4711 61613\r\nCONNECT"), "203.0.113.7:4711", 45, nil},
		{"v1 TCP6", []byte("PROXY TCP6 2001:db8::7 2001:db8::1 4711 61613\r\n"), "[2001:db8::7]:4711", 47, nil},
		{"v1 TCP6 mapped", []byte("PROXY TCP6 ::ffff:203.0.113.7 ::1 1 2\r\n"), "203.0.113.7:1", 39, nil},
		{"v1 UNKNOWN", []byte("PROXY UNKNOWN\r\n"), "", 15, nil},
		{"v1 UNKNOWN with addresses", []byte("PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n"), "", 59, nil},
		{"v1 prefix", []byte("PROX"), "", 0, errProxyIncomplete},
		{"v1 no CRLF yet", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4711 "), "", 0, errProxyIncomplete},
		{"v1 too long", []byte("PROXY TCP4 " + strings.Repeat("1", 120)), "", 0, errProxyMalformed},
		{"v1 LF only", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4711 61613\n"), "", 0, errProxyMalformed},
		{"v1 family mismatch", []byte("PROXY TCP4 2001:db8::7 192.0.2.1 4711 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 TCP6 with IPv4", []byte("PROXY TCP6 203.0.113.7 192.0.2.1 4711 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 bad port", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 65536 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 leading zero", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 0080 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 missing field", []byte("PROXY TCP4 203.0.113.7 192.0.2.1 4711\r\n"), "", 0, errProxyMalformed},
		{"v1 double space", []byte("PROXY TCP4  203.0.113.7 192.0.2.1 4711 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 UDP", []byte("PROXY UDP4 203.0.113.7 192.0.2.1 4711 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 name", []byte("PROXY TCP4 client.example 192.0.2.1 4711 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 zone", []byte("PROXY TCP6 fe80::1%eth0 ::1 4711 61613\r\n"), "", 0, errProxyMalformed},
		{"v1 empty", []byte("PROXY \r\n"), "", 0, errProxyMalformed},
		{"v2 TCP4", append(headerV2TCP4("203.0.113.7", 4711), "CONNECT"...), "203.0.113.7:4711", 28, nil},
		{"v2 TCP6 with a TLV", headerV2TCP6("2001:db8::7", 4711), "[2001:db8::7]:4711", 16 + 36 + 7, nil},
		{"v2 LOCAL", proxyV2(proxyV2Local, proxyV2Unspec, nil), "", 16, nil},
		{"v2 LOCAL ignores the family", proxyV2(proxyV2Local, proxyV2TCP4, make([]byte, 3)), "", 19, nil},
		{"v2 UNSPEC", proxyV2(proxyV2Proxy, proxyV2Unspec, nil), "", 16, nil},
		{"v2 UNIX stream", proxyV2(proxyV2Proxy, proxyV2UnixStream, make([]byte, 216)), "", 232, nil},
		{"v2 signature prefix", []byte(proxyV2Signature[:7]), "", 0, errProxyIncomplete},
		{"v2 fixed part prefix", headerV2TCP4("203.0.113.7", 1)[:14], "", 0, errProxyIncomplete},
		{"v2 addresses incomplete", headerV2TCP4("203.0.113.7", 1)[:20], "", 0, errProxyIncomplete},
		{"v2 bad signature", []byte("\r\n\r\nCONNECT\n"), "", 0, errProxyMalformed},
		{"v2 version 1", proxyV2(0x11, proxyV2TCP4, make([]byte, 12)), "", 0, errProxyMalformed},
		{"v2 early bad version", append(append([]byte(nil), proxyV2Signature...), 0x32), "", 0, errProxyMalformed},
		{"v2 unknown command", proxyV2(0x22, proxyV2TCP4, make([]byte, 12)), "", 0, errProxyMalformed},
		{"v2 TCP4 short", proxyV2(proxyV2Proxy, proxyV2TCP4, make([]byte, 11)), "", 0, errProxyMalformed},
		{"v2 TCP6 short", proxyV2(proxyV2Proxy, proxyV2TCP6, make([]byte, 35)), "", 0, errProxyMalformed},
		{"v2 UDP", proxyV2(proxyV2Proxy, 0x12, make([]byte, 12)), "", 0, errProxyMalformed},
		{"v2 unknown family", proxyV2(proxyV2Proxy, 0x41, make([]byte, 12)), "", 0, errProxyMalformed},
		{"v2 too long", proxyV2(proxyV2Proxy, proxyV2TCP4, make([]byte, proxyV2MaxLen+1)), "", 0, errProxyMalformed},
		{"empty", nil, "", 0, errProxyIncomplete},
		{"STOMP", []byte("CONNECT\n"), "", 0, errProxyMalformed},
		{"TLS", []byte{0x16, 0x03, 0x01}, "", 0, errProxyMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr, n, err := parseProxyHeader(tt.in)
			if tt.isErr != nil {
				if !errors.Is(err, tt.isErr) || n != 0 {
					t.Fatalf("got n=%d err=%v, want %v", n, err, tt.isErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if hdr.source.IsValid() {
				got = hdr.source.String()
			}
			if got != tt.want || n != tt.n {
				t.Errorf("got %q, %d bytes; want %q, %d", got, n, tt.want, tt.n)
			}
		})
	}
}

// FuzzProxyHeader: any input gives a header within the input, a
// refusal, or "incomplete" for a strict prefix only, and never a panic;
// a header parsed is the same whatever follows it.
func FuzzProxyHeader(f *testing.F) {
	for _, seed := range [][]byte{
		[]byte("PROXY TCP4 203.0.113.7 192.0.2.1 4711 61613\r\n"),
		[]byte("PROXY TCP6 2001:db8::7 2001:db8::1 4711 61613\r\nCONNECT\n\n\x00"),
		[]byte("PROXY UNKNOWN\r\n"),
		[]byte("PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r"),
		headerV2TCP4("203.0.113.7", 4711),
		headerV2TCP6("2001:db8::7", 4711),
		proxyV2(proxyV2Local, proxyV2Unspec, nil),
		proxyV2(proxyV2Proxy, proxyV2UnixStream, make([]byte, 216)),
		proxyV2(proxyV2Proxy, proxyV2TCP4, make([]byte, 3)),
		[]byte(proxyV2Signature),
		[]byte("CONNECT\naccept-version:1.2\n\n\x00"),
		{0x16, 0x03, 0x01, 0x00},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		hdr, n, err := parseProxyHeader(b)
		switch {
		case err == nil:
			if n <= 0 || n > len(b) {
				t.Fatalf("header of %d bytes in %d", n, len(b))
			}
			again, n2, err2 := parseProxyHeader(append(append([]byte(nil), b[:n]...), "trailing"...))
			if err2 != nil || n2 != n || again != hdr {
				t.Fatalf("the header changed with what follows: %v %d %v, then %v %d %v", hdr, n, err, again, n2, err2)
			}
		case errors.Is(err, errProxyIncomplete):
			if len(b) >= proxyV2Fixed+proxyV2MaxLen {
				t.Fatalf("incomplete after %d bytes", len(b))
			}
		case !errors.Is(err, errProxyMalformed):
			t.Fatalf("unexpected error %v", err)
		}
		if hdr.source.IsValid() && (hdr.source.Addr().Is4In6() || hdr.source.Addr().Zone() != "") {
			t.Fatalf("source %v not normalized", hdr.source)
		}
	})
}

// dialProxied connects from the source address from and sends header.
func dialProxied(t *testing.T, addr, from string, header []byte) net.Conn {
	t.Helper()
	nc, err := dialer(from).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = nc.Close() })
	if _, err := nc.Write(header); err != nil {
		t.Fatal(err)
	}
	return nc
}

// The PROXY protocol on the native listeners: from a trusted proxy
// (127.0.0.2) the header names the client, whose address the per-address
// limits and the session use, before the TLS handshake on the TLS
// listener; a connection from the proxy without a valid header is closed;
// from anyone else a header is not believed (the STOMP parser refuses
// it), and plain STOMP is served as usual. Shutdown closes a connection
// still owing its header.
func TestProxyProtocolNative(t *testing.T) {
	tc := writeTestCert(t, t.TempDir(), 1)
	cert, err := LoadCertificate(tc.certFile, tc.keyFile)
	if err != nil {
		t.Fatal(err)
	}
	auth := &remoteLog{}
	bc := brokerWithAuth(auth)
	bc.ConnectTimeout = 30 * time.Second // longer than the shutdown's wait: Shutdown must end the header read itself
	tlsAddr, _, srv := startTLSServer(t, cert, Config{
		ProxyProtocol: true, ProxyProtocolTLS: true,
		TrustedProxies:      []netip.Prefix{netip.MustParsePrefix(ipB + "/32")},
		MaxConnectionsPerIP: 1, ConnectionRatePerIP: -1,
		Broker: bc,
	})
	admin := startAdmin(t, srv.Server)
	connect := frame("CONNECT", "", "accept-version:1.2", "host:test")
	proxied := func(header []byte) *rawClient {
		return newRawClient(t, dialProxied(t, srv.addr, ipB, header))
	}

	proxied(headerV2TCP4("203.0.113.1", 4711)).connect()
	proxied([]byte("PROXY TCP4 203.0.113.2 192.0.2.1 4712 61613\r\n" + connect)).next(5 * time.Second)
	for _, remote := range []string{"203.0.113.1:4711", "203.0.113.2:4712"} {
		if err := auth.waitRemote(remote); err != nil {
			t.Errorf("session of %s: %v (got %v)", remote, err, auth.remotes)
		}
	}
	proxied(headerV2TCP4("203.0.113.1", 4713)).expectERROR(limitRefusal) // its client's one slot is taken
	proxied(headerV2TCP6("2001:db8::7", 1)).connect()                    // another client
	proxied(proxyV2(proxyV2Local, proxyV2Unspec, nil)).connect()         // the proxy's own check: the proxy's address
	proxied([]byte(connect)).expectClosed(5 * time.Second)               // no header
	proxied([]byte("PROXY TCP4 bogus\r\n")).expectClosed(5 * time.Second)

	// TLS: the header, then the handshake.
	nc := dialProxied(t, tlsAddr, ipB, []byte("PROXY TCP4 203.0.113.3 192.0.2.1 4714 61614\r\n"))
	tlsClient := newRawClient(t, tls.Client(nc, &tls.Config{RootCAs: tc.pool, ServerName: "127.0.0.1"}))
	tlsClient.connect()
	if err := auth.waitRemote("203.0.113.3:4714"); err != nil {
		t.Errorf("TLS session: %v (got %v)", err, auth.remotes)
	}

	// Anyone else: the header is a malformed frame, then the connection is
	// closed; plain STOMP is served, as that peer.
	waitAdmitted(t, srv.Server, 5) // the proxied sessions; the refused ones are gone
	for _, spoofed := range [][]byte{headerV2TCP4("203.0.113.9", 1), []byte("PROXY TCP4 203.0.113.9 192.0.2.1 1 2\r\n")} {
		spoof := newRawClient(t, dialProxied(t, srv.addr, ipA, spoofed))
		spoof.send(connect)
		f := spoof.next(5 * time.Second)
		if code := header(f, "error-code"); f.Command != frames.CmdError || code != "unknown-command" && code != "malformed-frame" {
			t.Fatalf("PROXY header %q from an untrusted peer: %s %q, want ERROR unknown-command or malformed-frame", spoofed, f.Command, code)
		}
		spoof.expectClosed(5 * time.Second)
		waitAdmitted(t, srv.Server, 5)
	}
	dialRawFrom(t, srv.addr, ipA).connect()
	if auth.seen("203.0.113.9:1") {
		t.Error("an untrusted peer's PROXY header named a session's remote")
	}

	_, body := get(t, admin+"/metrics")
	checkSamples(t, body, refusedSeries(map[string]int{"per_ip": 1}, nil))

	// Owing its header when the server shuts down (the cleanup's
	// Shutdown, whose wait is shorter than the connect timeout).
	dialProxied(t, srv.addr, ipB, []byte("PROXY TCP4 "))
}
