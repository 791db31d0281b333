package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/wsadapter"
)

// ErrServerClosed is returned by Serve after Shutdown.
var ErrServerClosed = errors.New("server: closed")

// Config configures a Server. Zero fields take their defaults.
type Config struct {
	// Broker configures the engine (limits, heart-beats, ...).
	Broker broker.Config
	// WriteTimeout bounds one socket write; a peer that does not read for
	// that long is dropped. Default 10s.
	WriteTimeout time.Duration
	// Linger is how long a connection closed by the server keeps reading
	// (and discarding) so its last ERROR or RECEIPT is not lost to a TCP
	// reset. Default 1s.
	Linger time.Duration
	// ReadBufferSize is the per-connection read buffer. Default 4 KiB.
	ReadBufferSize int
	// Logger receives server events. Default: discard.
	Logger *slog.Logger
	// WebSocket configures STOMP over WebSocket on the HTTP listener
	// (ServeWeb). MaxMessage defaults to the broker's frame limits.
	WebSocket wsadapter.Config
	// WebSocketPath is where the HTTP listener upgrades. Default "/ws".
	WebSocketPath string
	// Page, when set, serves every other HTTP path (the demo page).
	Page http.Handler
	// Version is the build's version, for stompbox_build_info. Default "dev".
	Version string
	// Registry is where the server, the broker and the Go and process
	// collectors register, and what /metrics serves; pass one to share it
	// with the journal (persistence.Config.Registerer). Default: a new one.
	Registry *prometheus.Registry
	// Certificate is the TLS certificate of ServeTLS and ServeWebTLS.
	Certificate *Certificate
	// TLSMinVersion is the oldest TLS version accepted (tls.VersionTLS12
	// or tls.VersionTLS13). Default and minimum: TLS 1.2.
	TLSMinVersion uint16
	// EnablePprof mounts net/http/pprof under /debug/pprof/ on the admin
	// listener.
	EnablePprof bool
	// AdminToken is the bearer token of the admin API's role admin
	// (admin.token): the read endpoints and the actions. "": none.
	AdminToken string
	// AdminReadToken is the bearer token of the admin API's role read
	// (admin.read_token). "": none.
	AdminReadToken string
	// AdminUsers checks the admin API's HTTP Basic credentials (the users
	// file's auth.Users, behind auth.Backoff): a principal with role
	// "admin" gets role admin, one with role "monitor" role read. nil: no
	// Basic. With none of the three set, the admin API answers loopback
	// clients only, read-only.
	AdminUsers broker.Authenticator
	// Cluster, when set, is this node's link to the other stompbox nodes
	// (package server/cluster): the broker shares its topics and queues
	// through it, and /readyz fails while it cannot reach NATS. Whoever
	// built it closes it, after Shutdown.
	Cluster ClusterNode

	// Admission limits, applied when a connection is accepted: native
	// ones, and every HTTP connection of ServeWeb and ServeWebTLS (page
	// and WebSocket alike; an upgrade keeps its connection's slot). A
	// refused native connection gets ERROR limit-exceeded (retryable) and
	// is closed before any session exists; a refused HTTP connection gets
	// 503 (the caps) or 429 with Retry-After (the rate) and is closed.
	// Addresses are the peer's IP as the socket sees it, or the client's a
	// trusted proxy names (TrustedProxies), IPv6 grouped by /64. For the
	// first three: 0 means the default, negative means unlimited.

	// MaxConnections bounds the STOMP connections open at once, native and
	// WebSocket together. Default 100000.
	MaxConnections int
	// MaxConnectionsPerIP bounds the connections open at once from one
	// address. Default 1000.
	MaxConnectionsPerIP int
	// ConnectionRatePerIP bounds new connections (and upgrades) per second
	// from one address, with bursts up to ConnectionBurstPerIP: a token
	// bucket. It is what bounds CONNECT (and so authentication) attempts
	// per address. Default 50 per second.
	ConnectionRatePerIP float64
	// ConnectionBurstPerIP is the token bucket's size. Default: twice
	// ConnectionRatePerIP (100 with the default rate), at least 1.
	ConnectionBurstPerIP int

	// UpgradeToken lets a browser authenticate in the WebSocket upgrade
	// request itself. Default: off.
	UpgradeToken UpgradeToken

	// HTTP listeners (ServeWeb, ServeWebTLS, ServeAdmin). Zero fields take
	// their defaults.

	// HTTPIdleTimeout closes a keep-alive connection idle between
	// requests for that long. Default 120s.
	HTTPIdleTimeout time.Duration
	// HTTPReadTimeout bounds reading one request, headers and body. It
	// does not apply to an upgraded WebSocket, whose driver sets its own
	// deadlines. Default 30s.
	HTTPReadTimeout time.Duration
	// HTTPMaxHeaderBytes bounds a request's header (431 past it).
	// Default 16 KiB.
	HTTPMaxHeaderBytes int

	// TrustedProxies are the peers (load balancers, reverse proxies) whose
	// word on the client's address is taken: on a WebSocket upgrade from
	// one, the client is the right-most address of Forwarded or
	// X-Forwarded-For that is not itself trusted; on a native listener
	// with ProxyProtocol (or ProxyProtocolTLS), the address in the PROXY
	// header. That address is what the per-address limits, logs and the
	// session's remote address use. Everyone else's headers are ignored.
	// A connection from a trusted proxy counts against MaxConnections at
	// accept and against its client's address once that is known.
	TrustedProxies []netip.Prefix
	// ProxyProtocol makes Serve expect a PROXY protocol (v1 or v2) header
	// from trusted proxies: a connection from one must start with it (read
	// within Broker.ConnectTimeout; malformed or missing: closed). Others
	// are served as usual, so a PROXY header from them is a malformed
	// STOMP frame (ERROR, closed).
	ProxyProtocol bool
	// ProxyProtocolTLS is ProxyProtocol for ServeTLS: the header precedes
	// the TLS handshake.
	ProxyProtocolTLS bool

	// ShutdownReconnectWindow spreads reconnects after a shutdown: each
	// connection's ERROR server-shutdown carries reconnect-after:<ms>, a
	// delay of its own within [0, window), and WebSocket clients get close
	// code 1012 (service restart). Default 10s
	// (DefaultShutdownReconnectWindow); negative: no reconnect-after.
	ShutdownReconnectWindow time.Duration

	// WebSocketPingInterval is how often the server sends a WebSocket ping
	// on each WebSocket connection, whether or not STOMP traffic flows:
	// browsers answer pongs without running page scripts, and any inbound
	// byte, pong included, counts as the client's liveness for the STOMP
	// heart-beat timeout, so a throttled background tab stays connected.
	// Default 25s (DefaultWebSocketPingInterval); negative: no pings.
	WebSocketPingInterval time.Duration

	// ConnectionDriver chooses how connections are read and written:
	// DriverEpoll (the default on Linux: an idle connection holds no
	// goroutine and no buffer) or DriverGoroutines (a read loop and a
	// writer per connection; the default elsewhere, and what TLS
	// connections always use).
	ConnectionDriver string
}

// UpgradeToken configures authenticating the WebSocket upgrade request: a
// token in a query parameter or a cookie (browsers cannot set headers on
// a WebSocket), checked by Broker.Authenticator (Credentials.FromUpgrade)
// before the connection is upgraded. A client so authenticated may CONNECT
// without login and passcode; a CONNECT with its own credentials is checked
// on its own.
type UpgradeToken struct {
	// QueryParam names the query parameter holding the token ("" : none).
	// It is looked at before Cookie. With it set, request URLs are never
	// logged (tokens in URLs end up in logs); only their path is.
	QueryParam string
	// Cookie names the cookie holding the token ("" : none).
	Cookie string
	// Required refuses upgrades without a token (401). With neither name
	// set it refuses every upgrade: fail closed.
	Required bool
}

// The defaults of Config.
const (
	DefaultWriteTimeout       = 10 * time.Second
	DefaultLinger             = time.Second
	DefaultReadBufferSize     = 4 << 10
	DefaultHTTPIdleTimeout    = 120 * time.Second
	DefaultHTTPReadTimeout    = 30 * time.Second
	DefaultHTTPMaxHeaderBytes = 16 << 10
)

func (c Config) withDefaults() Config {
	setDefault(&c.WriteTimeout, DefaultWriteTimeout)
	setDefault(&c.Linger, DefaultLinger)
	setDefault(&c.ReadBufferSize, DefaultReadBufferSize)
	setDefault(&c.HTTPIdleTimeout, DefaultHTTPIdleTimeout)
	setDefault(&c.HTTPReadTimeout, DefaultHTTPReadTimeout)
	setDefault(&c.HTTPMaxHeaderBytes, DefaultHTTPMaxHeaderBytes)
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Broker.Logger == nil {
		c.Broker.Logger = c.Logger
	}
	if c.Version == "" {
		c.Version = "dev"
	}
	if c.WebSocketPath == "" {
		c.WebSocketPath = "/ws"
	}
	if c.ConnectionDriver == "" {
		c.ConnectionDriver = DriverEpoll
	}
	if c.ShutdownReconnectWindow == 0 {
		c.ShutdownReconnectWindow = DefaultShutdownReconnectWindow
	}
	if c.WebSocketPingInterval == 0 {
		c.WebSocketPingInterval = DefaultWebSocketPingInterval
	}
	if c.MaxConnections == 0 {
		c.MaxConnections = DefaultMaxConnections
	}
	if c.MaxConnectionsPerIP == 0 {
		c.MaxConnectionsPerIP = DefaultMaxConnectionsPerIP
	}
	if c.ConnectionRatePerIP == 0 {
		c.ConnectionRatePerIP = DefaultConnectionRatePerIP
	}
	if c.ConnectionBurstPerIP <= 0 {
		c.ConnectionBurstPerIP = max(1, int(math.Ceil(2*c.ConnectionRatePerIP)))
	}
	if c.WebSocket.Buffers == nil {
		c.WebSocket.Buffers = new(wsadapter.Buffers) // shared by this server's connections
	}
	if c.WebSocket.MaxMessage <= 0 {
		limits := c.Broker.Frame.WithDefaults()
		c.WebSocket.MaxMessage = limits.MaxCommandLine + limits.MaxHeaderBytes + limits.MaxBody + 2*limits.MaxHeaders + 16
	}
	return c
}

// setDefault replaces a zero or negative setting with its default.
func setDefault[T int | time.Duration](v *T, def T) {
	if *v <= 0 {
		*v = def
	}
}

// Server accepts STOMP connections and drives them against one Broker.
type Server struct {
	cfg       Config         // immutable
	broker    *broker.Broker // immutable
	admission *admission     // immutable (internally locked)
	// refusing holds a token per goroutine answering a refused native or
	// HTTP connection (refuse).
	refusing chan struct{}
	trusted  trustedProxies // immutable: Config.TrustedProxies

	mu        sync.Mutex
	listeners map[net.Listener]struct{} // guarded by mu
	https     map[*http.Server]bool     // guarded by mu: true for STOMP over WebSocket, false for admin
	registry  *prometheus.Registry      // immutable
	metrics   metrics
	recovered atomic.Bool             // Recover has returned nil (or there is no journal)
	conns     map[connection]struct{} // guarded by mu
	closed    bool                    // guarded by mu
	sweepStop chan struct{}           // guarded by mu: closed to stop the idle-durable sweeper; nil until it starts
	wg        sync.WaitGroup          // one per Serve loop and per connection

	// proxied (guarded by mu) are connections still sending their PROXY
	// header, for Shutdown to close.
	proxied map[net.Conn]struct{}
	clock   clock // immutable: what the drivers keep their deadlines in
	// poll (guarded by mu) is the epoll driver, started with the first
	// connection it serves and stopped by Shutdown; nil until then.
	poll *poller
	// wsClosed and wsPonged are the WebSocket connections' metrics hooks,
	// made once (immutable): a method value per connection is a heap
	// object per connection.
	wsClosed func(wsadapter.CloseCode, bool)
	wsPonged func()
	// admin (immutable) serves the admin API, /api/ of the admin listener.
	admin *adminAPI
}

// New builds a Server and its Broker.
func New(cfg Config) *Server {
	cfg = cfg.withDefaults()
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	cfg.Broker.Registerer = reg
	if cfg.Cluster != nil {
		cfg.Broker.Cluster = cfg.Cluster
	}
	s := &Server{
		cfg:       cfg,
		broker:    broker.New(cfg.Broker),
		listeners: make(map[net.Listener]struct{}),
		https:     make(map[*http.Server]bool),
		conns:     make(map[connection]struct{}),
		proxied:   make(map[net.Conn]struct{}),
		trusted:   trustedProxies(cfg.TrustedProxies),
		registry:  reg,
		admission: newAdmission(cfg, maxTrackedIPs, time.Now),
		refusing:  make(chan struct{}, refusalWorkers),
		clock:     newClock(),
	}
	s.wsClosed, s.wsPonged = s.metrics.countWSClose, s.metrics.countPong
	s.admin = newAdminAPI(s)
	reg.MustRegister(newCollector(&s.metrics, cfg.Version))
	reg.MustRegister(newPingCollector(&s.metrics))
	if cfg.Certificate != nil {
		reg.MustRegister(newCertCollector(cfg.Certificate))
	}
	if cfg.Broker.Journal == nil {
		s.recovered.Store(true) // nothing to recover
	}
	if cfg.Cluster != nil {
		cfg.Cluster.Attach(s.broker)
	}
	return s
}

// ClusterNode is what the server needs of a cluster link
// (server/cluster.Node): the broker's Cluster, the broker it delivers
// other nodes' messages to, and whether it can serve.
type ClusterNode interface {
	broker.Cluster
	// Attach gives the node the broker, before anything is served.
	Attach(b *broker.Broker)
	// Ready says why the node cannot serve now (NATS unreachable, no
	// JetStream), or nil.
	Ready(ctx context.Context) error
}

// Broker returns the engine, for embedding and tests.
func (s *Server) Broker() *broker.Broker { return s.broker }

// Serve accepts native STOMP connections on ln until Shutdown, then returns
// ErrServerClosed. The listener is closed by Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.serveNative(ln, nil, s.cfg.ProxyProtocol)
}

// serveNative is Serve, with TLS when tlsCfg is set (the handshake runs on
// the connection's read loop, within the connect timeout) and the PROXY
// protocol from trusted proxies when proxy is set.
func (s *Server) serveNative(ln net.Listener, tlsCfg *tls.Config, proxy bool) error {
	if !s.begin(func() { s.listeners[ln] = struct{}{} }) {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer s.wg.Done()

	withTLS := func(nc net.Conn) net.Conn {
		if tlsCfg == nil {
			return nc
		}
		return tls.Server(nc, tlsCfg)
	}
	backoff := 5 * time.Millisecond
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of file descriptors: wait for some to close instead of spinning.
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("server: accept: %w", err)
		}
		backoff = 5 * time.Millisecond
		fromProxy := proxy && s.trusted.contains(peerIP(nc.RemoteAddr()))
		key := broker.AddressKey(nc.RemoteAddr().String())
		if fromProxy {
			key = netip.Addr{} // the total only, until the header names the client
		}
		if r, ok := s.admission.admit(key); !ok {
			s.metrics.refused[r.limit].Add(1)
			s.cfg.Logger.Debug("connection refused", "remote", nc.RemoteAddr().String(), "limit", r.limit.String())
			s.refuseNative(withTLS(nc), r)
			continue
		}
		ac := &admittedConn{Conn: nc, slot: s.admission.newSlot(key)}
		if fromProxy {
			s.acceptProxied(ac, withTLS)
			continue
		}
		tc := withTLS(ac)
		s.startConn(tc, tcpStream{tc}, nil, time.Time{})
	}
}

// begin registers a serving loop (register runs under mu) unless the
// server is closed; the loop must call s.wg.Done when it returns.
func (s *Server) begin(register func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	register()
	s.startSweeperLocked()
	s.wg.Add(1)
	return true
}

// serveHTTP serves handler on ln until Shutdown closes it; stomp says
// whether it carries STOMP (and so counts for readiness, and each of its
// connections takes an admission slot at accept), tlsCfg whether it is
// HTTPS. Every listener gets the header, read and idle timeouts and the
// header size bound: a hijacked (upgraded) connection keeps the deadlines
// net/http set, and the connection driver replaces them before its first
// read and write.
func (s *Server) serveHTTP(ln net.Listener, handler http.Handler, stomp bool, tlsCfg *tls.Config) error {
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: min(10*time.Second, s.cfg.HTTPReadTimeout),
		ReadTimeout:       s.cfg.HTTPReadTimeout,
		IdleTimeout:       s.cfg.HTTPIdleTimeout,
		MaxHeaderBytes:    s.cfg.HTTPMaxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.cfg.Logger.Handler(), slog.LevelDebug),
	}
	if stomp {
		al := newAdmitListener(ln, s, tlsCfg)
		ln, hs.ConnContext, hs.ConnState = al, al.connContext, al.connState
	}
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	if !s.begin(func() { s.https[hs] = stomp }) {
		_ = ln.Close()
		return ErrServerClosed
	}
	defer s.wg.Done()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return ErrServerClosed
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// startConn serves a connection; its admission slot is given back when
// nc is closed (an admittedConn, or a TLS connection over one). principal,
// when set, is who the upgrade request authenticated as; accepted, when
// set, is when the connection was accepted, if work before the session
// (a PROXY header) took time: the connect timeout counts from it.
func (s *Server) startConn(nc net.Conn, st stream, principal *broker.Principal, accepted time.Time) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = nc.Close()
		return
	}
	// The session is created only once the connection will be served, so
	// every session is released.
	var cn connection
	pc := s.newPollConn(nc, st)
	if pc != nil {
		cn = pc
	} else {
		cn = newConn(s, nc, st)
	}
	w := cn.base()
	if principal != nil {
		w.session.Preauthenticate(principal) // before the driver's first Feed
	}
	w.session.AcceptedAt(accepted)
	secure := secureConn(nc)
	kind := transportTCP
	if ws, ok := st.(wsStream); ok {
		ws.WriteDeadline = w.writeDeadline
		ws.Closed = s.wsClosed
		ws.Ponged = s.wsPonged
		if s.cfg.WebSocketPingInterval > 0 {
			w.pinger = ws
		}
		kind = transportWS
	}
	if secure {
		kind++ // tls after tcp, wss after ws
	}
	w.counters = &s.metrics.transports[kind]
	w.kind, w.accepted = kind, accepted
	if accepted.IsZero() {
		w.accepted = time.Now()
	}
	w.counters.accepted.Add(1)
	w.counters.open.Add(1)
	s.cfg.Logger.Debug("connection opened", "session", w.session.ID(), "remote", nc.RemoteAddr().String(), "transport", kind.String(), "driver", driverName(pc != nil))
	s.conns[cn] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	if pc != nil {
		pc.start() // ends with endConn
		return
	}
	go func() {
		cn.(*conn).serve() // closes nc, which gives the slot back
		s.endConn(cn)
	}()
}

// endConn forgets a connection whose driver is done with it.
func (s *Server) endConn(cn connection) {
	cn.base().counters.open.Add(-1)
	s.mu.Lock()
	delete(s.conns, cn)
	s.mu.Unlock()
	s.wg.Done()
}

// Reauthorize asks every open session to check its rights again, after
// the Authenticator's or the Authorizer's configuration was reloaded
// (SIGHUP): each session's read loop re-checks its principal, its virtual
// host and its subscriptions, and ends with ERROR forbidden if any is no
// longer allowed (broker.Session.RequestReauthorize). It returns at once,
// with the number of sessions asked.
func (s *Server) Reauthorize() int {
	s.admin.auth.forget() // admin users removed or changed lose their cached logins now
	s.mu.Lock()
	conns := slices.Collect(maps.Keys(s.conns)) // worked on without mu
	s.mu.Unlock()
	for _, c := range conns {
		c.base().session.RequestReauthorize()
	}
	return len(conns)
}

// Shutdown stops accepting, tells every client the server is going away
// (ERROR server-shutdown, retryable), lets writers flush for at most Linger,
// and waits for all connections to end. When ctx expires first, the remaining connections are
// closed at once and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.admin.stop() // event streams end: they would hold the admin listener's shutdown
	s.mu.Lock()
	s.closed = true
	if s.sweepStop != nil {
		close(s.sweepStop)
		s.sweepStop = nil // a second Shutdown must not close it again
	}
	for ln := range s.listeners {
		_ = ln.Close()
	}
	for hs := range s.https {
		_ = hs.Close() // its own connections; upgraded ones are ours, below
	}
	for nc := range s.proxied {
		_ = nc.Close() // its goroutine gives up on the header
	}
	conns := slices.Collect(maps.Keys(s.conns)) // worked on without mu
	s.mu.Unlock()
	s.broker.ReleaseParked() // and no session parks from now on
	s.tellShutdown(conns)
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.stopPoller()
		s.sealHistories(ctx)
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for c := range s.conns {
			c.closeNow()
		}
		s.mu.Unlock()
		<-done // every loop exits once its socket is closed
		s.stopPoller()
		s.sealHistories(ctx)
		return ctx.Err()
	}
}
