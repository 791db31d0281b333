package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/persistence"
	"github.com/stompbox/stompbox/server"
	"github.com/stompbox/stompbox/server/cluster"
	"github.com/stompbox/stompbox/web"
	"github.com/stompbox/stompbox/wsadapter"
)

// exitGrace is how long past shutdown_timeout the process waits for its
// own teardown (a journal stuck in fsync) before exiting anyway.
const exitGrace = 2 * time.Second

// journalCheckInterval is how often serve asks the journal whether it has
// failed.
const journalCheckInterval = time.Second

// journal is what serve needs of the disk journal: the broker's Journal,
// and Failed, the error that broke it for good (persistence.File).
type journal interface {
	broker.Journal
	Failed() error
}

// serve runs the broker until ctx ends (a signal), a listener fails or the
// journal fails, then shuts down within the configured deadline. hup
// reloads the TLS certificate.
func serve(ctx context.Context, l *config.Loaded, logger *slog.Logger, hup <-chan os.Signal) error {
	return serveWith(ctx, l, logger, hup, openJournal)
}

// openJournal opens the journal in journal.dir; nil without one.
func openJournal(c config.Config, logger *slog.Logger, registry prometheus.Registerer) (journal, error) {
	if c.Journal.Dir == "" {
		return nil, nil
	}
	policy, err := persistence.ParseSyncPolicy(c.Journal.Sync)
	if err != nil {
		return nil, err
	}
	minFree := int64(c.Journal.MinFree)
	if minFree == 0 {
		minFree = -1 // 0 disables the check; the library reads 0 as its default
	}
	f, err := persistence.Open(c.Journal.Dir, persistence.Config{
		Sync: policy, SyncInterval: time.Duration(c.Journal.SyncInterval), MaxBytes: int64(c.Journal.MaxBytes),
		SegmentSize: int64(c.Journal.SegmentSize), Logger: logger, Registerer: registry, MinFree: minFree,
	})
	if err != nil {
		return nil, err // not f: a nil *File must not become a non-nil interface
	}
	return f, nil
}

// openCluster joins the cluster configured in c (nil: cluster mode is
// off). It does not wait for NATS: a node started while NATS is down
// connects by itself once it is back, /readyz failing meanwhile.
func openCluster(ctx context.Context, c config.Config, logger *slog.Logger, registry prometheus.Registerer) (*cluster.Node, error) {
	cc, ok := c.ClusterConfig()
	if !ok {
		return nil, nil
	}
	cc.Logger, cc.Registerer = logger.With("component", "cluster"), registry
	node, err := cluster.New(ctx, *cc)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	logger.Info("cluster mode", "cluster", cc.Name, "node", cc.NodeName, "nats", cc.URLs, "embedded_nats", cc.Embedded != nil)
	return node, nil
}

// closeCluster closes the cluster node, if any, within timeout: after the
// server has shut down, so the acknowledgements its connections made on
// the way out reach NATS.
func closeCluster(node *cluster.Node, timeout time.Duration, cause error) error {
	if node == nil {
		return cause
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := node.Close(ctx); err != nil {
		return errors.Join(cause, fmt.Errorf("cluster close: %w", err))
	}
	return cause
}

// serveWith is serve with the journal opened by openJournal (tests pass
// one that fails).
func serveWith(ctx context.Context, l *config.Loaded, logger *slog.Logger, hup <-chan os.Signal,
	openJournal func(config.Config, *slog.Logger, prometheus.Registerer) (journal, error)) error {
	c := l.Config
	registry := prometheus.NewRegistry()
	journal, err := openJournal(c, logger, registry)
	if err != nil {
		return err
	}
	cert, err := loadCertificate(c)
	if err != nil {
		return closeJournal(journal, err)
	}
	sec, err := buildSecurity(c.Auth, logger)
	if err != nil {
		return closeJournal(journal, err)
	}
	sc := serverConfig(c, logger, registry, journal, cert)
	sc.Broker.Authenticator, sc.Broker.Authorizer = sec.authenticator, sec.authorizer
	node, err := openCluster(ctx, c, logger, registry)
	if err != nil {
		return closeJournal(journal, err)
	}
	if node != nil {
		sc.Cluster = node
	}
	srv := server.New(sc)
	warnings(c, logger)

	running := &listeners{logger: logger, errs: make(chan error, 5)}
	if c.Listen.Admin != "" {
		if err := running.start("admin", c.Listen.Admin, srv.ServeAdmin); err != nil {
			return shutdown(srv, journal, node, c, logger, err)
		}
	}
	if err := srv.Recover(); err != nil {
		return shutdown(srv, journal, node, c, logger, err)
	}
	for _, ls := range []struct {
		name, addr string
		serve      func(net.Listener) error
	}{
		{"stomp", c.Listen.STOMP, srv.Serve},
		{"stomp_tls", c.Listen.STOMPTLS, srv.ServeTLS},
		{"http", c.Listen.HTTP, srv.ServeWeb},
		{"https", c.Listen.HTTPS, srv.ServeWebTLS},
	} {
		if ls.addr == "" {
			continue
		}
		if err := running.start(ls.name, ls.addr, ls.serve); err != nil {
			return shutdown(srv, journal, node, c, logger, err)
		}
	}
	logger.Info("stompbox listening", append(running.attrs, "websocket_path", c.WebSocket.Path, "version", version, "config", l.File)...)

	// A failed journal is terminal (PostgreSQL's model: after a failed
	// fsync what is on disk is unknown): shut down as usual and exit
	// non-zero, so that the supervisor restarts the process into recovery.
	var journalCheck <-chan time.Time
	if journal != nil {
		t := time.NewTicker(journalCheckInterval)
		defer t.Stop()
		journalCheck = t.C
	}
	for {
		select {
		case <-journalCheck:
			if err := journal.Failed(); err != nil {
				logger.Error("journal failed: persistent work is refused (ERROR journal-failed) and /readyz fails; "+
					"shutting down and exiting non-zero so that a restart recovers from the journal", "err", err)
				return shutdown(srv, journal, node, c, logger, fmt.Errorf("exiting for recovery: %w", err))
			}
		case <-ctx.Done():
			logger.Info("shutting down", "deadline", c.ShutdownTimeout.String())
			return shutdown(srv, journal, node, c, logger, nil)
		case err := <-running.errs:
			return shutdown(srv, journal, node, c, logger, err)
		case <-hup:
			reloadCertificate(cert, logger)
			sec.reload(logger)
			// Sessions already open are held to the reloaded files too.
			logger.Info("re-authorizing open sessions", "sessions", srv.Reauthorize())
		}
	}
}

// serverConfig maps the options onto the server's and broker's Config.
func serverConfig(c config.Config, logger *slog.Logger, registry *prometheus.Registry, journal broker.Journal, cert *server.Certificate) server.Config {
	heartbeat := time.Duration(c.Heartbeat.Interval)
	if heartbeat == 0 {
		heartbeat = -1 // broker.Config: negative disables, zero means default
	}
	minTLS := uint16(tls.VersionTLS12)
	if c.TLS.MinVersion == "1.3" {
		minTLS = tls.VersionTLS13
	}
	lim := c.Limits
	return server.Config{
		Logger:         logger,
		Version:        version,
		Registry:       registry,
		EnablePprof:    c.Admin.Pprof,
		Certificate:    cert,
		TLSMinVersion:  minTLS,
		WriteTimeout:   time.Duration(c.Conn.WriteTimeout),
		Linger:         time.Duration(c.Conn.Linger),
		ReadBufferSize: int(c.Conn.ReadBufferSize),
		WebSocket:      wsadapter.Config{AllowedOrigins: c.WebSocket.AllowedOrigins, AllowedHosts: c.HTTP.AllowedHosts},
		WebSocketPath:  c.WebSocket.Path,
		UpgradeToken: server.UpgradeToken{QueryParam: c.Auth.TokenQuery, Cookie: c.Auth.TokenCookie,
			Required: c.Auth.TokenRequired},
		HTTPIdleTimeout:     time.Duration(c.HTTP.IdleTimeout),
		HTTPReadTimeout:     time.Duration(c.HTTP.ReadTimeout),
		HTTPMaxHeaderBytes:  int(c.HTTP.MaxHeaderBytes),
		TrustedProxies:      trustedProxies(c.TrustedProxies),
		ProxyProtocol:       c.Listen.STOMPProxyProtocol,
		ProxyProtocolTLS:    c.Listen.STOMPTLSProxyProtocol,
		MaxConnections:      lim.MaxConnections,
		MaxConnectionsPerIP: lim.MaxConnectionsPerIP,
		ConnectionRatePerIP: lim.ConnectionRatePerIP,
		Page:                web.Handler(),
		Broker: broker.Config{
			ServerName: "stompbox/" + version,
			Frame: frames.Limits{MaxBody: int(lim.MaxBody), MaxHeaders: lim.MaxHeaders,
				MaxHeaderBytes: int(lim.MaxHeaderBytes), MaxHeaderLine: int(lim.MaxHeaderLine)},
			HeartBeat:                    frames.HeartBeat{Send: heartbeat, Receive: heartbeat},
			HeartbeatTolerance:           c.Heartbeat.Tolerance,
			HeartbeatMinInterval:         time.Duration(c.Heartbeat.MinInterval),
			ConnectTimeout:               time.Duration(lim.ConnectTimeout),
			MaxSubscriptions:             lim.MaxSubscriptions,
			MaxOutboxBytes:               int(lim.MaxOutboxBytes),
			MaxConnectionBytes:           int(lim.MaxConnectionBytes),
			MaxIDLength:                  lim.MaxIDLength,
			MaxQueueMessages:             lim.MaxQueueMessages,
			MaxQueueBytes:                int(lim.MaxQueueBytes),
			MaxQueues:                    lim.MaxQueues,
			MaxTotalQueuedBytes:          int(lim.MaxTotalQueuedBytes),
			MaxTopicUnacked:              lim.MaxTopicUnacked,
			MaxRedeliveries:              lim.MaxRedeliveries,
			MaxTransactions:              lim.MaxTransactions,
			MaxTransactionFrames:         lim.MaxTransactionFrames,
			DestinationMetrics:           c.Admin.DestinationMetrics,
			VirtualHosts:                 c.VirtualHosts,
			MaxFramesPerSecond:           lim.MaxFramesPerSecond,
			MaxBytesPerSecond:            int(lim.MaxBytesPerSecond),
			MaxDestinationsPerConnection: lim.MaxDestinations,
			FullPolicy:                   fullPolicy(lim.FullPolicy),
			BlockTimeout:                 time.Duration(lim.BlockTimeout),
			AuthFailureDelay:             authFailureDelay(c.Auth.FailureDelay),
			MaxQueuesPerUser:             unlimitedIfZero(lim.MaxQueuesPerUser),
			MaxDurablesPerUser:           unlimitedIfZero(lim.MaxDurablesPerUser),
			DurableIdleTTL:               time.Duration(lim.DurableIdleTTL),
			ResumeGrace:                  resumeGrace(c.Session.ResumeGrace),
			MaxParkedSessions:            c.Session.MaxParked,
			MaxParkedPerIP:               c.Session.MaxParkedPerIP,
			PresenceGrace:                presenceGrace(c.Presence.Grace),
			MaxPresenceMembers:           c.Presence.MaxMembers,
			MaxPresenceSets:              c.Presence.MaxSets,
			Journal:                      journal,
			TopicHistory:                 c.Topics.History.Broker(),
			MaxHistoryBytes:              int(c.Topics.HistoryMaxBytes),
			DedupeWindow:                 offIfZero(c.Dedupe.Window),
			DedupeMaxKeysPerUser:         c.Dedupe.MaxKeysPerUser,
		},
		// 0 turns these off in the command; the library's off is negative.
		WebSocketPingInterval:   offIfZero(c.WebSocket.PingInterval),
		ShutdownReconnectWindow: offIfZero(c.ShutdownReconnectWindow),
	}
}

// presenceGrace maps presence.grace: 0 (members leave at once) is the
// broker's negative value, since its zero means the default.
func presenceGrace(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// trustedProxies parses trusted_proxies (validated by Load).
func trustedProxies(entries []string) []netip.Prefix {
	var out []netip.Prefix
	for _, e := range entries {
		if p, err := config.ParseTrustedProxy(e); err == nil {
			out = append(out, p)
		}
	}
	return out
}

// fullPolicy maps limits.full_policy, validated already.
func fullPolicy(s string) broker.FullPolicy {
	p, _ := broker.ParseFullPolicy(s)
	return p
}

func warnings(c config.Config, logger *slog.Logger) {
	if !web.Complete() {
		logger.Warn("demo page not built into this binary: run `make web` and rebuild; / explains the same")
	}
	if slices.Contains(c.WebSocket.AllowedOrigins, "*") {
		logger.Warn("WebSocket origin check disabled: pages from any site may connect (websocket.allowed_origins: [\"*\"])")
	}
	if c.Admin.Pprof {
		logger.Warn("pprof enabled on the admin listener: profiles expose internals; keep listen.admin private", "admin", c.Listen.Admin)
	}
}

func loadCertificate(c config.Config) (*server.Certificate, error) {
	if c.Listen.STOMPTLS == "" && c.Listen.HTTPS == "" {
		return nil, nil
	}
	return server.LoadCertificate(c.TLS.CertFile, c.TLS.KeyFile)
}

func reloadCertificate(cert *server.Certificate, logger *slog.Logger) {
	if cert == nil {
		logger.Info("SIGHUP: no TLS listener, nothing to reload")
		return
	}
	if err := cert.Reload(); err != nil {
		logger.Error("TLS certificate reload failed; the previous certificate stays in use", "err", err)
		return
	}
	leaf := cert.Leaf()
	logger.Info("TLS certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}

// listeners binds and serves, and collects the first serving error.
type listeners struct {
	logger *slog.Logger
	attrs  []any
	errs   chan error // one per listener at most; capacity for all
}

func (ls *listeners) start(name, addr string, serve func(net.Listener) error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen.%s: %w", name, err)
	}
	ls.attrs = append(ls.attrs, name, ln.Addr().String())
	go func() {
		if err := serve(ln); !errors.Is(err, server.ErrServerClosed) {
			ls.errs <- fmt.Errorf("listen.%s %s: %w", name, ln.Addr(), err)
		}
	}()
	return nil
}

// shutdown tells every client (ERROR server-shutdown, WebSocket 1012),
// lets in-flight receipts finish, closes the journal, all within
// shutdown_timeout; cause is returned (joined with what went wrong).
func shutdown(srv *server.Server, journal broker.Journal, node *cluster.Node, c config.Config, logger *slog.Logger, cause error) error {
	deadline := time.Duration(c.ShutdownTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		if err := srv.Shutdown(ctx); err != nil {
			logger.Warn("shutdown deadline reached; remaining connections were closed", "err", err)
		}
		done <- closeCluster(node, deadline, closeJournal(journal, nil))
	}()
	select {
	case err := <-done:
		return errors.Join(cause, err)
	case <-time.After(deadline + exitGrace):
		return errors.Join(cause, fmt.Errorf("shutdown did not finish within %v; exiting anyway", deadline+exitGrace))
	}
}

func closeJournal(journal broker.Journal, cause error) error {
	if journal == nil {
		return cause
	}
	if err := journal.Close(); err != nil {
		return errors.Join(cause, fmt.Errorf("journal close: %w", err))
	}
	return cause
}

// offIfZero maps a duration option whose 0 means off onto the libraries'
// Config, where 0 means the default and a negative value off.
func offIfZero(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// unlimitedIfZero maps a quota option (0: unlimited) onto broker.Config
// (0: default, negative: unlimited).
func unlimitedIfZero(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// authFailureDelay maps the option (0: none) onto broker.Config (0:
// default, negative: none).
// resumeGrace maps session.resume_grace to broker.Config.ResumeGrace,
// where 0 means the default: the command's 0 disables recovery.
func resumeGrace(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

func authFailureDelay(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}
