package main

import (
	"context"
	"crypto/tls"
	"log/slog"
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
	"github.com/stompbox/stompbox/web"
	"github.com/stompbox/stompbox/wsadapter"
)

// serve runs the broker (server.Run) until ctx ends (a signal), a listener
// fails or the journal fails. hup reloads the TLS certificate and the auth
// files.
func serve(ctx context.Context, l *config.Loaded, logger *slog.Logger, hup <-chan os.Signal) error {
	return serveWith(ctx, l, logger, hup, nil)
}

// serveWith is serve with the journal opened by openJournal instead of
// from journal.dir when it is set (tests pass one that fails).
func serveWith(ctx context.Context, l *config.Loaded, logger *slog.Logger, hup <-chan os.Signal,
	openJournal func(prometheus.Registerer) (server.Journal, error)) error {
	opts, err := runOptions(l, logger, hup)
	if err != nil {
		return err
	}
	opts.OpenJournal = openJournal
	return server.Run(ctx, opts)
}

// runOptions maps the configuration onto server.Run's Options: what only
// the command knows (the configuration file, the certificate and auth
// files, the signals) is built here; the assembly is Run's.
func runOptions(l *config.Loaded, logger *slog.Logger, hup <-chan os.Signal) (server.Options, error) {
	c := l.Config
	var jc persistence.Config
	if c.Journal.Dir != "" {
		var err error
		if jc, err = journalConfig(c.Journal); err != nil {
			return server.Options{}, err
		}
	}
	cert, err := loadCertificate(c)
	if err != nil {
		return server.Options{}, err
	}
	sec, err := buildSecurity(c.Auth, logger)
	if err != nil {
		return server.Options{}, err
	}
	sc := serverConfig(c, logger, cert)
	sc.Broker.Authenticator, sc.Broker.Authorizer = sec.authenticator, sec.authorizer
	sc.AdminUsers = sec.adminUsers
	cc, _ := c.ClusterConfig() // nil: cluster mode is off
	warnings(c, logger)
	return server.Options{
		Config: sc,
		Listen: server.Listen{STOMP: c.Listen.STOMP, STOMPTLS: c.Listen.STOMPTLS, HTTP: c.Listen.HTTP,
			HTTPS: c.Listen.HTTPS, Admin: c.Listen.Admin},
		JournalDir:            c.Journal.Dir,
		Journal:               jc,
		Cluster:               cc,
		ShutdownTimeout:       time.Duration(c.ShutdownTimeout),
		MemoryReleaseInterval: time.Duration(c.Memory.ReleaseInterval),
		Reload:                hup,
		Reloaders:             sec.reloaders,
		LogAttrs:              []any{"config", l.File},
	}, nil
}

// journalConfig maps the journal options onto persistence.Config (the
// logger and registry are Run's).
func journalConfig(j config.Journal) (persistence.Config, error) {
	policy, err := persistence.ParseSyncPolicy(j.Sync)
	if err != nil {
		return persistence.Config{}, err
	}
	minFree := int64(j.MinFree)
	if minFree == 0 {
		minFree = -1 // 0 disables the check; the library reads 0 as its default
	}
	return persistence.Config{Sync: policy, SyncInterval: time.Duration(j.SyncInterval), MaxBytes: int64(j.MaxBytes),
		SegmentSize: int64(j.SegmentSize), MinFree: minFree}, nil
}

// serverConfig maps the options onto the server's and broker's Config
// (Run adds the registry, the journal and the cluster node).
func serverConfig(c config.Config, logger *slog.Logger, cert *server.Certificate) server.Config {
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
		Logger:           logger,
		Version:          version,
		EnablePprof:      c.Admin.Pprof,
		AdminToken:       c.Admin.Token,
		AdminReadToken:   c.Admin.ReadToken,
		Certificate:      cert,
		TLSMinVersion:    minTLS,
		WriteTimeout:     time.Duration(c.Conn.WriteTimeout),
		Linger:           time.Duration(c.Conn.Linger),
		ReadBufferSize:   int(c.Conn.ReadBufferSize),
		ConnectionDriver: c.Conn.Driver,
		WebSocket:        wsadapter.Config{AllowedOrigins: c.WebSocket.AllowedOrigins, AllowedHosts: c.HTTP.AllowedHosts},
		WebSocketPath:    c.WebSocket.Path,
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
