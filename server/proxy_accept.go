package server

import (
	"net"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// acceptProxied serves a native connection from a trusted proxy on a
// listener with the PROXY protocol on: its own goroutine (owned by s.wg;
// Shutdown closes the socket to end it) reads the header, moves the
// connection's slot from the zero key to its client's address, and serves
// it as that client's. withTLS wraps the socket for a TLS listener: the
// header precedes the handshake. A connection without a valid header in
// time is closed without an answer: the peer is a proxy, not a STOMP
// client, and a proxy that sends none is misconfigured (logged).
func (s *Server) acceptProxied(ac *admittedConn, withTLS func(net.Conn) net.Conn) {
	if !s.begin(func() { s.proxied[ac] = struct{}{} }) {
		_ = ac.Close()
		return
	}
	accepted := time.Now() // the connect timeout covers the header too
	go func() {
		defer s.wg.Done()
		hdr, rest, err := readProxyHeader(ac.Conn, s.proxyHeaderTimeout())
		s.mu.Lock()
		delete(s.proxied, ac)
		s.mu.Unlock()
		peer := ac.Conn.RemoteAddr()
		if err != nil {
			s.cfg.Logger.Debug("connection refused", "peer", peer.String(), "err", err)
			_ = ac.Close()
			return
		}
		ac.pending = rest // before anything reads ac
		client := peer
		if hdr.source.IsValid() {
			client = net.TCPAddrFromAddrPort(hdr.source)
		}
		if r, ok := ac.slot.rekey(broker.AddressKey(client.String()), client); !ok {
			s.metrics.refused[r.limit].Add(1)
			s.cfg.Logger.Debug("connection refused", "remote", client.String(), "peer", peer.String(), "limit", r.limit.String())
			s.refuseNative(withTLS(ac), r)
			return
		}
		tc := withTLS(ac)
		s.startConn(tc, tcpStream{tc}, nil, accepted)
	}()
}

// proxyHeaderTimeout bounds reading a PROXY header: it is the first thing
// on the connection, so the connect timeout (accept to CONNECT) covers it.
func (s *Server) proxyHeaderTimeout() time.Duration {
	if d := s.cfg.Broker.ConnectTimeout; d > 0 {
		return d
	}
	return broker.DefaultConnectTimeout
}
