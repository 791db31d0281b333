package server

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"net/netip"
	"sync"

	"github.com/stompbox/stompbox/broker"
)

// slot is one connection's hold on the admission limits, from accept until
// the connection closes: released once, whoever closes it (the connection
// driver, net/http for a keep-alive connection, Shutdown). A WebSocket
// upgrade keeps the slot its HTTP connection took: one socket, one slot,
// whatever it carries.
type slot struct {
	a *admission // immutable

	mu       sync.Mutex
	key      netip.Addr // guarded by mu: what the slot counts against
	remote   net.Addr   // guarded by mu: the client, when not the socket's peer (behind a trusted proxy)
	hijacked bool       // guarded by mu: net/http handed the connection over (HTTP only)
	released bool       // guarded by mu
}

func (a *admission) newSlot(key netip.Addr) *slot { return &slot{a: a, key: key} }

// release gives the slot back; later calls do nothing.
func (s *slot) release() {
	s.mu.Lock()
	done := s.released
	s.released = true
	key := s.key
	s.mu.Unlock()
	if !done {
		s.a.release(key)
	}
}

// rekey moves the slot to key, as the connection of client (nil: the
// socket's peer), if key's limits allow; else nothing changes. Lock order:
// slot.mu, then admission.mu.
func (s *slot) rekey(key netip.Addr, client net.Addr) (refusal, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.released {
		return refusal{}, true // closed meanwhile: nothing left to count
	}
	if key != s.key {
		if r, ok := s.a.move(s.key, key); !ok {
			return r, false
		}
		s.key = key
	}
	s.remote = client
	return refusal{}, true
}

// client is the address a trusted proxy named, or nil.
func (s *slot) client() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remote
}

// admittedConn is a connection served by the driver (native, or upgraded
// to WebSocket) with its slot: Close gives the slot back, RemoteAddr is
// the client (the one a trusted proxy named, or the socket's peer), and
// Read first returns what was read past a PROXY header. The WebSocket
// layer writes to the socket itself, not through this wrapper, so that its
// batched writes stay one writev.
type admittedConn struct {
	net.Conn
	slot *slot // immutable
	// pending (read side only: one reader at a time) holds bytes read past
	// a PROXY header, returned before the socket's.
	pending []byte
}

// Read returns the bytes kept from the PROXY header's read first.
func (c *admittedConn) Read(p []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(p, c.pending)
		if c.pending = c.pending[n:]; len(c.pending) == 0 {
			c.pending = nil
		}
		return n, nil
	}
	return c.Conn.Read(p)
}

// Close closes the socket and gives the slot back.
func (c *admittedConn) Close() error {
	err := c.Conn.Close()
	c.slot.release()
	return err
}

// CloseWrite half-closes the socket (the driver uses it so that a last
// frame is not lost to a reset).
func (c *admittedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// RemoteAddr is the client's address: logs, sessions and per-address
// limits use it.
func (c *admittedConn) RemoteAddr() net.Addr {
	if a := c.slot.client(); a != nil {
		return a
	}
	return c.Conn.RemoteAddr()
}

// secureConn reports whether the connection runs over TLS.
func secureConn(nc net.Conn) bool {
	if ac, ok := nc.(*admittedConn); ok {
		nc = ac.Conn
	}
	_, ok := nc.(*tls.Conn)
	return ok
}

// admitListener applies the admission limits to every connection of a
// STOMP HTTP listener as it is accepted, not only to upgrades: an idle
// keep-alive connection costs the server as much as a session's socket.
// A refused one gets a minimal 503 (or 429 with Retry-After) and is
// closed, by the bounded refusal workers (closed at once when they are
// busy); it is counted in stompbox_connections_refused_total. A connection
// from a trusted proxy counts against the total only, until an upgrade
// names its client. Admitted connections are returned as they are (net/http
// and the WebSocket layer see the socket itself); their slots are tracked
// here, released by net/http's StateClosed, or handed to the upgrade with
// StateHijacked.
type admitListener struct {
	net.Listener
	s      *Server     // immutable
	tlsCfg *tls.Config // immutable: for the refusal's handshake on an HTTPS listener

	mu    sync.Mutex
	slots map[net.Conn]*slot // guarded by mu: by the accepted socket
}

func newAdmitListener(ln net.Listener, s *Server, tlsCfg *tls.Config) *admitListener {
	return &admitListener{Listener: ln, s: s, tlsCfg: tlsCfg, slots: make(map[net.Conn]*slot)}
}

// Accept returns the next admitted connection.
func (l *admitListener) Accept() (net.Conn, error) {
	s := l.s
	for {
		nc, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key := broker.AddressKey(nc.RemoteAddr().String())
		if s.trusted.contains(peerIP(nc.RemoteAddr())) {
			key = netip.Addr{}
		}
		if r, ok := s.admission.admit(key); !ok {
			s.metrics.refused[r.limit].Add(1)
			s.cfg.Logger.Debug("http connection refused", "remote", nc.RemoteAddr().String(), "limit", r.limit.String())
			if l.tlsCfg != nil {
				nc = tls.Server(nc, l.tlsCfg)
			}
			s.refuse(nc, refusalResponse(r))
			continue
		}
		l.mu.Lock()
		l.slots[nc] = s.admission.newSlot(key)
		l.mu.Unlock()
		return nc, nil
	}
}

// slotOf is the slot of a connection net/http serves (the socket under
// TLS), or nil.
func (l *admitListener) slotOf(nc net.Conn, remove bool) *slot {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	sl := l.slots[nc]
	if remove {
		delete(l.slots, nc)
	}
	return sl
}

// slotKey is the request context key of a request's connection's slot.
type slotKey struct{}

// connContext is http.Server.ConnContext: it makes the connection's slot
// reachable from its requests.
func (l *admitListener) connContext(ctx context.Context, nc net.Conn) context.Context {
	if sl := l.slotOf(nc, false); sl != nil {
		return context.WithValue(ctx, slotKey{}, sl)
	}
	return ctx
}

// connState is http.Server.ConnState: a closed connection gives its slot
// back; a hijacked one hands it to the upgrade that hijacked it.
func (l *admitListener) connState(nc net.Conn, state http.ConnState) {
	switch state {
	case http.StateClosed:
		if sl := l.slotOf(nc, true); sl != nil {
			sl.release()
		}
	case http.StateHijacked:
		if sl := l.slotOf(nc, true); sl != nil {
			sl.mu.Lock()
			sl.hijacked = true
			sl.mu.Unlock()
		}
	}
}

// wasHijacked reports whether net/http handed the connection over.
func (s *slot) wasHijacked() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hijacked
}
