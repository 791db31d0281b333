package cluster

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of Config, applied by withDefaults.
const (
	defaultName           = "stompbox"
	defaultAckWait        = 30 * time.Second
	defaultPublishTimeout = 5 * time.Second
)

// Connection tuning. ReconnectWait is short because a node without NATS
// refuses persistent SENDs: every second counts, and a reconnect attempt
// is one dial. Pings find a NATS server that vanished without closing the
// socket (a dead host) within about PingInterval*MaxPingsOut.
const (
	reconnectWait = time.Second
	pingInterval  = 10 * time.Second
	maxPingsOut   = 2
)

// readyTimeout bounds ready's JetStream round trip; readyCacheFor is how
// long its answer is reused, so /readyz polled by a load balancer many
// times a second costs one request a second.
const (
	readyTimeout  = 2 * time.Second
	readyCacheFor = time.Second
)

// withDefaults returns c with its zero fields set to their defaults: Name
// "stompbox", NodeName the host name, AckWait 30s, PublishTimeout 5s and a
// Logger that discards.
func (c Config) withDefaults() Config {
	if c.Name == "" {
		c.Name = defaultName
	}
	if c.NodeName == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			// A node needs some name; the configuration can always set one.
			h = "stompbox-node"
		}
		c.NodeName = h
	}
	if c.AckWait <= 0 {
		c.AckWait = defaultAckWait
	}
	if c.PublishTimeout <= 0 {
		c.PublishTimeout = defaultPublishTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// link is the node's connection to NATS: the core connection, its
// JetStream context and, with cluster.embedded_nats, the nats-server it
// runs. nats.go reconnects by itself forever; link tracks the state for
// /readyz and metrics.
type link struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	srv *server.Server // nil without an embedded server

	cfg     Config
	log     *slog.Logger
	metrics *linkMetrics
	// closed is closed by the connection's ClosedHandler: close waits on it
	// for the drain to finish.
	closed    chan struct{}
	closeOnce sync.Once

	mu       sync.Mutex
	readyAt  time.Time // when readyErr was learned; zero: never
	readyErr error
	lastErr  error // why the connection last went down
}

// openLink connects to NATS as cfg says, first starting the embedded
// nats-server when cfg.Embedded is set (with cfg.URLs empty the node then
// talks to it in-process). NATS being down is not an error: the link
// keeps trying in the background, connected() and ready() tell. Only a
// configuration that can never work (missing credential or TLS files, an
// embedded server that does not start) fails. ctx is checked first; the
// steps that take time have bounds of their own (the embedded start
// embeddedReadyTimeout, the first dial to each URL nats.go's 2s).
func openLink(ctx context.Context, cfg Config) (*link, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if len(cfg.URLs) == 0 && cfg.Embedded == nil {
		return nil, errors.New("cluster: no NATS URL (cluster.nats_url) and no embedded NATS (cluster.embedded_nats)")
	}
	l := &link{cfg: cfg, log: cfg.Logger, closed: make(chan struct{})}
	// The metrics exist even without a Registerer: the handlers count
	// unconditionally. connected is read only at scrape time, after
	// registration below, when l.nc is set.
	l.metrics = newLinkMetrics(cfg.Name, cfg.NodeName, l.connected)
	opts, err := l.options()
	if err != nil {
		return nil, err
	}
	if cfg.Embedded != nil {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		l.srv = srv
		if len(cfg.URLs) == 0 {
			opts = append(opts, nats.InProcessServer(srv))
		}
	}
	// RetryOnFailedConnect: Connect returns a reconnecting connection when
	// no server answers, so errors here are configuration errors.
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		l.shutdownEmbedded()
		return nil, fmt.Errorf("cluster: connect to NATS %s: %w", strings.Join(cfg.URLs, ","), err)
	}
	l.nc = nc
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		l.shutdownEmbedded()
		return nil, fmt.Errorf("cluster: JetStream: %w", err)
	}
	l.js = js
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(l.metrics); err != nil {
			nc.Close()
			l.shutdownEmbedded()
			return nil, fmt.Errorf("cluster: register metrics: %w", err)
		}
	}
	if !nc.IsConnected() {
		l.log.Warn("NATS not reachable, retrying in the background", "urls", cfg.URLs, "node", cfg.NodeName)
	}
	return l, nil
}

// options builds the nats.go options, checking the credential and TLS
// files first so a typo is reported by name instead of as a failed
// handshake on every reconnect.
func (l *link) options() ([]nats.Option, error) {
	cfg := l.cfg
	opts := []nats.Option{
		nats.Name(cfg.NodeName),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(reconnectWait),
		// No buffering while disconnected: a publish then fails at once and
		// the broker answers the client with a retryable ERROR instead of
		// holding a message NATS may never see.
		nats.ReconnectBufSize(-1),
		// A node delivers its own topic messages locally; receiving them back
		// from NATS would deliver them twice.
		nats.NoEcho(),
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		nats.DisconnectErrHandler(l.onDisconnect),
		nats.ReconnectHandler(l.onReconnect),
		nats.ConnectHandler(l.onConnect),
		nats.ClosedHandler(l.onClosed),
		nats.ErrorHandler(l.onAsyncError),
	}
	if cfg.CredsFile != "" {
		if err := checkReadable(cfg.CredsFile); err != nil {
			return nil, fmt.Errorf("cluster: cluster.nats_creds_file: %w", err)
		}
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLSCA != "" {
		if err := checkReadable(cfg.TLSCA); err != nil {
			return nil, fmt.Errorf("cluster: cluster.nats_tls_ca: %w", err)
		}
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	switch {
	case cfg.TLSCert != "" && cfg.TLSKey != "":
		if _, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey); err != nil {
			return nil, fmt.Errorf("cluster: cluster.nats_tls_cert/cluster.nats_tls_key: %w", err)
		}
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	case cfg.TLSCert != "" || cfg.TLSKey != "":
		return nil, errors.New("cluster: cluster.nats_tls_cert and cluster.nats_tls_key go together: set both or neither")
	}
	return opts, nil
}

// checkReadable reports, in words, why path cannot be read.
func checkReadable(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", path, err)
	}
	return f.Close()
}

func (l *link) onConnect(nc *nats.Conn) {
	// The first connection, whether Connect made it or (NATS down at
	// start) a later retry did; nats.go calls it on its callback goroutine.
	l.log.Info("connected to NATS", "url", nc.ConnectedUrlRedacted(), "node", l.cfg.NodeName)
}

func (l *link) onDisconnect(nc *nats.Conn, err error) {
	if nc.IsClosed() {
		return // close's own disconnect, not an outage
	}
	l.metrics.disconnects.Inc()
	l.mu.Lock()
	l.lastErr = err
	l.readyAt = time.Time{}
	l.mu.Unlock()
	l.log.Warn("disconnected from NATS, reconnecting", "err", err)
}

func (l *link) onReconnect(nc *nats.Conn) {
	l.metrics.reconnects.Inc()
	l.mu.Lock()
	l.readyAt = time.Time{} // the next ready asks JetStream again
	l.mu.Unlock()
	l.log.Info("reconnected to NATS", "url", nc.ConnectedUrlRedacted())
}

func (l *link) onClosed(*nats.Conn) {
	l.closeOnce.Do(func() { close(l.closed) })
}

func (l *link) onAsyncError(_ *nats.Conn, sub *nats.Subscription, err error) {
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	l.log.Warn("NATS asynchronous error", "subject", subject, "err", err)
}

// connected reports whether the connection to NATS is up right now.
func (l *link) connected() bool {
	return l.nc.IsConnected()
}

// ready returns nil when the node is connected to NATS and JetStream
// answers; otherwise an error an operator can act on. The JetStream answer
// is cached for about a second.
func (l *link) ready(ctx context.Context) error {
	if !l.connected() {
		l.mu.Lock()
		last := l.lastErr
		l.mu.Unlock()
		if last == nil {
			last = l.nc.LastError() // a first connect that never succeeded
		}
		if last != nil {
			return fmt.Errorf("not connected to NATS (%s), reconnecting: last error: %w", strings.Join(l.servers(), ","), last)
		}
		return fmt.Errorf("not connected to NATS (%s), reconnecting", strings.Join(l.servers(), ","))
	}
	l.mu.Lock()
	if !l.readyAt.IsZero() && time.Since(l.readyAt) < readyCacheFor {
		err := l.readyErr
		l.mu.Unlock()
		return err
	}
	l.mu.Unlock()

	// Concurrent callers may both ask; the answer is the same and cheap.
	rctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	_, err := l.js.AccountInfo(rctx)
	err = jetStreamProblem(err)
	if ctx.Err() != nil {
		return err // the caller gave up: not JetStream's answer, do not cache
	}
	l.mu.Lock()
	l.readyAt, l.readyErr = time.Now(), err
	l.mu.Unlock()
	return err
}

// servers names the NATS servers the link knows, for error messages.
func (l *link) servers() []string {
	if l.srv != nil && len(l.cfg.URLs) == 0 {
		return []string{"embedded, in-process"}
	}
	return l.cfg.URLs
}

// jetStreamProblem translates AccountInfo's error into operator words.
func jetStreamProblem(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("connected to NATS but JetStream is not enabled (run nats-server with -js, or enable it for this account): %w", err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("connected to NATS but JetStream does not answer (a NATS cluster without a JetStream leader: too few servers up?): %w", err)
	default:
		return fmt.Errorf("connected to NATS but JetStream failed: %w", err)
	}
}

// close drains the connection (subscriptions finish what they hold,
// pending publishes are flushed), bounded by ctx: when ctx ends first the
// connection is closed hard. Then it stops the embedded server and waits
// for it. It returns ctx's error if the drain was cut short.
func (l *link) close(ctx context.Context) error {
	if l.cfg.Registerer != nil {
		l.cfg.Registerer.Unregister(l.metrics)
	}
	var cut error
	// Drain on a reconnecting connection closes it and says so: fine.
	if err := l.nc.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionReconnecting) && !errors.Is(err, nats.ErrConnectionClosed) {
		l.log.Warn("NATS drain", "err", err)
		l.nc.Close()
	}
	select {
	case <-l.closed:
	case <-ctx.Done():
		cut = fmt.Errorf("cluster: NATS drain cut short: %w", ctx.Err())
		l.nc.Close()
		// The handler runs on nats.go's callback goroutine; wait for it
		// (bounded) so nothing of the link outlives close.
		select {
		case <-l.closed:
		case <-time.After(time.Second):
		}
	}
	l.shutdownEmbedded()
	return cut
}

// shutdownEmbedded stops the embedded server, if any, and waits for it.
func (l *link) shutdownEmbedded() {
	if l.srv == nil {
		return
	}
	l.srv.Shutdown()
	l.srv.WaitForShutdown()
}
