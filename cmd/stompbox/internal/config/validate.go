package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/server"
	"github.com/stompbox/stompbox/wsadapter"
)

// MinAdminTokenLen is the shortest admin.token and admin.read_token
// accepted: a bearer token is a password nobody has to type.
const MinAdminTokenLen = 16

// MaxDestinationMetrics caps admin.destination_metrics: each named
// destination is two series.
const MaxDestinationMetrics = 1000

// validate checks the merged configuration; each problem names the option
// and where its value came from.
func (l *Loaded) validate() error {
	c := &l.Config
	var errs []error
	check := func(key string, ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf("%s: %s: %s", l.Sources[key], key, fmt.Sprintf(format, args...)))
		}
	}
	address := func(key, addr string) {
		if addr == "" {
			return
		}
		_, port, err := net.SplitHostPort(addr)
		check(key, err == nil && port != "", "invalid address %q (want host:port or :port)", addr)
	}
	oneOf := func(key, v string, allowed ...string) {
		check(key, slices.Contains(allowed, v), "%q is not one of %s", v, strings.Join(allowed, ", "))
	}
	positive := func(key string, n int64) { check(key, n > 0, "must be positive (got %d)", n) }
	positiveDuration := func(key string, d Duration) { check(key, d > 0, "must be positive (got %s)", d) }

	address("listen.stomp", c.Listen.STOMP)
	address("listen.stomp_tls", c.Listen.STOMPTLS)
	address("listen.http", c.Listen.HTTP)
	address("listen.https", c.Listen.HTTPS)
	address("listen.admin", c.Listen.Admin)
	if c.Listen.STOMP == "" && c.Listen.STOMPTLS == "" && c.Listen.HTTP == "" && c.Listen.HTTPS == "" {
		errs = append(errs, errors.New("listen: every STOMP listener is disabled (set listen.stomp, listen.stomp_tls, listen.http or listen.https)"))
	}
	if c.Listen.STOMPTLS != "" || c.Listen.HTTPS != "" {
		check("tls.cert_file", c.TLS.CertFile != "", "required by listen.stomp_tls and listen.https")
		check("tls.key_file", c.TLS.KeyFile != "", "required by listen.stomp_tls and listen.https")
	}
	oneOf("tls.min_version", c.TLS.MinVersion, "1.2", "1.3")
	check("websocket.path", strings.HasPrefix(c.WebSocket.Path, "/"), "must start with / (got %q)", c.WebSocket.Path)
	for _, o := range c.WebSocket.AllowedOrigins {
		err := wsadapter.ValidOrigin(o)
		check("websocket.allowed_origins", err == nil, "%q is not an origin: %v", o, err)
	}
	for _, h := range c.HTTP.AllowedHosts {
		err := wsadapter.ValidHost(h)
		check("http.allowed_hosts", err == nil, "%q is not a host: %v", h, err)
	}
	positiveDuration("http.idle_timeout", c.HTTP.IdleTimeout)
	positiveDuration("http.read_timeout", c.HTTP.ReadTimeout)
	check("http.max_header_bytes", c.HTTP.MaxHeaderBytes >= 1<<10 && c.HTTP.MaxHeaderBytes <= 1<<20,
		"must be between 1KiB and 1MiB (got %s)", c.HTTP.MaxHeaderBytes)
	for _, p := range c.TrustedProxies {
		_, err := ParseTrustedProxy(p)
		check("trusted_proxies", err == nil, "%v", err)
	}
	check("listen.stomp_proxy_protocol", !c.Listen.STOMPProxyProtocol || c.Listen.STOMP != "", "needs listen.stomp")
	check("listen.stomp_tls_proxy_protocol", !c.Listen.STOMPTLSProxyProtocol || c.Listen.STOMPTLS != "", "needs listen.stomp_tls")
	check("trusted_proxies", len(c.TrustedProxies) > 0 || !c.Listen.STOMPProxyProtocol && !c.Listen.STOMPTLSProxyProtocol,
		"required by listen.stomp_proxy_protocol and listen.stomp_tls_proxy_protocol: only trusted proxies may send a PROXY header")
	check("heartbeat.interval", c.Heartbeat.Interval >= 0, "must not be negative (0 disables heart-beats)")
	check("heartbeat.tolerance", c.Heartbeat.Tolerance >= 1, "must be at least 1 (got %v)", c.Heartbeat.Tolerance)
	check("heartbeat.min_interval", time.Duration(c.Heartbeat.MinInterval) >= 100*time.Millisecond,
		"must be at least 100ms: a client must not make the server spin (got %s)", c.Heartbeat.MinInterval)

	lim := &c.Limits
	positiveDuration("limits.connect_timeout", lim.ConnectTimeout)
	for key, n := range map[string]int64{
		"limits.max_body": int64(lim.MaxBody), "limits.max_headers": int64(lim.MaxHeaders),
		"limits.max_header_bytes": int64(lim.MaxHeaderBytes), "limits.max_header_line": int64(lim.MaxHeaderLine),
		"limits.max_subscriptions": int64(lim.MaxSubscriptions), "limits.max_outbox_bytes": int64(lim.MaxOutboxBytes),
		"limits.max_connection_bytes": int64(lim.MaxConnectionBytes),
		"limits.max_id_length":        int64(lim.MaxIDLength),
		"limits.max_queue_messages":   int64(lim.MaxQueueMessages), "limits.max_queue_bytes": int64(lim.MaxQueueBytes),
		"limits.max_queues": int64(lim.MaxQueues), "limits.max_total_queued_bytes": int64(lim.MaxTotalQueuedBytes),
		"limits.max_topic_unacked": int64(lim.MaxTopicUnacked), "limits.max_transactions": int64(lim.MaxTransactions),
		"limits.max_transaction_frames": int64(lim.MaxTransactionFrames),
		"journal.segment_size":          int64(c.Journal.SegmentSize), "connection.read_buffer_size": int64(c.Conn.ReadBufferSize),
		"presence.max_members": int64(c.Presence.MaxMembers), "presence.max_sets": int64(c.Presence.MaxSets),
	} {
		positive(key, n)
	}
	check("presence.grace", c.Presence.Grace >= 0, "must not be negative (0: members leave at once; got %s)", time.Duration(c.Presence.Grace))
	check("limits.durable_idle_ttl", lim.DurableIdleTTL >= 0, "must not be negative (0: never; got %s)", time.Duration(lim.DurableIdleTTL))
	check("limits.max_redeliveries", lim.MaxRedeliveries >= -1, "must be -1 (never dead-letter) or more (got %d)", lim.MaxRedeliveries)
	check("limits.max_header_line", lim.MaxHeaderLine <= lim.MaxHeaderBytes, "must not exceed limits.max_header_bytes (%s)", lim.MaxHeaderBytes)
	check("limits.max_body", lim.MaxBody <= 1<<30, "must be at most 1GiB (got %s)", lim.MaxBody)

	oneOf("journal.sync", c.Journal.Sync, "always", "interval", "never")
	positiveDuration("journal.sync_interval", c.Journal.SyncInterval)
	check("journal.segment_size", c.Journal.SegmentSize >= 4<<10, "must be at least 4KiB (got %s)", c.Journal.SegmentSize)
	oneOf("limits.full_policy", lim.FullPolicy, "block", "error")
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	check("admin.destination_metrics", c.Admin.DestinationMetrics >= 0 && c.Admin.DestinationMetrics <= MaxDestinationMetrics,
		"must be between 0 and %d (got %d)", MaxDestinationMetrics, c.Admin.DestinationMetrics)
	check("admin.pprof", !c.Admin.Pprof || c.Listen.Admin != "", "needs listen.admin")
	// The messages never quote a token.
	for _, kv := range [...][2]string{{"admin.token", c.Admin.Token}, {"admin.read_token", c.Admin.ReadToken}} {
		key, tok := kv[0], kv[1]
		check(key, tok == "" || len(tok) >= MinAdminTokenLen, "must be at least %d characters (got %d)", MinAdminTokenLen, len(tok))
		check(key, !strings.ContainsFunc(tok, func(r rune) bool { return r <= ' ' || r >= 0x7f }), "must be printable ASCII without spaces")
		check(key, tok == "" || c.Listen.Admin != "", "needs listen.admin")
	}
	check("admin.read_token", c.Admin.ReadToken == "" || c.Admin.ReadToken != c.Admin.Token, "must differ from admin.token")
	for key, n := range map[string]int64{
		"limits.max_frames_per_second": int64(lim.MaxFramesPerSecond), "limits.max_bytes_per_second": int64(lim.MaxBytesPerSecond),
		"limits.max_destinations_per_connection": int64(lim.MaxDestinations),
		"limits.max_queues_per_user":             int64(lim.MaxQueuesPerUser), "limits.max_durables_per_user": int64(lim.MaxDurablesPerUser),
		"limits.block_timeout": int64(lim.BlockTimeout),
	} {
		check(key, n >= 0, "must not be negative (0: unlimited; got %d)", n)
	}
	for key, n := range map[string]float64{
		"limits.max_connections": float64(lim.MaxConnections), "limits.max_connections_per_ip": float64(lim.MaxConnectionsPerIP),
		"limits.connection_rate_per_ip": lim.ConnectionRatePerIP,
	} {
		check(key, n > 0 || n == -1, "must be positive, or -1 for unlimited (got %v)", n)
	}
	for _, vh := range c.VirtualHosts {
		check("virtual_hosts", vh != "" && len(vh) <= 255 && !strings.ContainsFunc(vh, func(r rune) bool { return r < ' ' || r == 0x7f }),
			"%q is not a virtual host name (1 to 255 printable characters)", vh)
	}
	l.validateAuth(check)
	l.validateCluster(check)
	err := broker.ValidateHistory(c.Topics.History.Broker())
	check("topics.history", err == nil, "%v", err)
	positive("topics.history_max_bytes", int64(c.Topics.HistoryMaxBytes))
	positiveDuration("connection.write_timeout", c.Conn.WriteTimeout)
	positiveDuration("connection.linger", c.Conn.Linger)
	positiveDuration("shutdown_timeout", c.ShutdownTimeout)
	check("shutdown_timeout", time.Duration(c.ShutdownTimeout) <= time.Hour, "must be at most 1h (got %s)", c.ShutdownTimeout)
	check("shutdown_reconnect_window", c.ShutdownReconnectWindow >= 0, "must not be negative (0: off; got %s)", c.ShutdownReconnectWindow)
	check("connection.driver", c.Conn.Driver == server.DriverEpoll || c.Conn.Driver == server.DriverGoroutines,
		"must be %s or %s (got %q)", server.DriverEpoll, server.DriverGoroutines, c.Conn.Driver)
	check("websocket.ping_interval", c.WebSocket.PingInterval >= 0, "must not be negative (0: off; got %s)", c.WebSocket.PingInterval)
	check("dedupe.window", c.Dedupe.Window >= 0, "must not be negative (0: off; got %s)", c.Dedupe.Window)
	check("memory.release_interval", c.Memory.ReleaseInterval == 0 || time.Duration(c.Memory.ReleaseInterval) >= time.Second,
		"must be 0 (never) or at least 1s: each release is a full collection (got %s)", c.Memory.ReleaseInterval)
	check("dedupe.max_keys_per_user", c.Dedupe.MaxKeysPerUser > 0, "must be positive (got %d)", c.Dedupe.MaxKeysPerUser)
	slices.SortFunc(errs, func(a, b error) int { return strings.Compare(a.Error(), b.Error()) })
	return errors.Join(errs...)
}

// validateAuth checks that some authentication is configured (the command
// never accepts everyone by accident) and that its pieces fit together.
func (l *Loaded) validateAuth(check func(key string, ok bool, format string, args ...any)) {
	a := &l.Config.Auth
	jwt := a.JWTSecretFile != "" || a.JWTKeysFile != ""
	check("auth", a.Anonymous || a.UsersFile != "" || jwt,
		"no authentication configured: set auth.users_file, auth.jwt_keys_file or auth.jwt_secret_file (or auth.anonymous: true for development)")
	check("auth.jwt_secret_file", a.JWTSecretFile == "" || a.JWTKeysFile == "", "set either auth.jwt_secret_file (HS256) or auth.jwt_keys_file (RS256/ES256), not both")
	check("auth.jwt_audience", !jwt || a.JWTAudience != "", "required with a JWT key: tokens minted for another service must not work here")
	check("auth.token_query_param", a.TokenQuery == "" || jwt, "needs a JWT key (auth.jwt_keys_file or auth.jwt_secret_file)")
	check("auth.token_cookie", a.TokenCookie == "" || jwt, "needs a JWT key (auth.jwt_keys_file or auth.jwt_secret_file)")
	check("auth.token_required", !a.TokenRequired || a.TokenQuery != "" || a.TokenCookie != "", "needs auth.token_query_param or auth.token_cookie")
	for key, claim := range map[string]string{"auth.jwt_user_claim": a.JWTUserClaim, "auth.jwt_roles_claim": a.JWTRolesClaim,
		"auth.jwt_publish_claim": a.JWTPublishClaim, "auth.jwt_subscribe_claim": a.JWTSubscribe, "auth.jwt_vhosts_claim": a.JWTVHostsClaim} {
		check(key, claim != "", "must name a claim")
	}
	check("auth.failure_delay", a.FailureDelay >= 0 && time.Duration(a.FailureDelay) <= 10*time.Second, "must be between 0 and 10s (got %s)", a.FailureDelay)
	check("auth.failure_backoff_after", a.FailureBackoffAfter >= 0, "must not be negative (0 disables the backoff; got %d)", a.FailureBackoffAfter)
	check("auth.failure_backoff_max", time.Duration(a.FailureBackoffMax) >= time.Second && time.Duration(a.FailureBackoffMax) <= 24*time.Hour,
		"must be between 1s and 24h (got %s)", a.FailureBackoffMax)
	check("auth.jwt_leeway", a.JWTLeeway >= 0 && time.Duration(a.JWTLeeway) <= 10*time.Minute, "must be between 0 and 10m (got %s)", a.JWTLeeway)
}

// ParseTrustedProxy reads a trusted_proxies entry: a CIDR ("10.0.0.0/8",
// "2001:db8::/32") or a single address ("192.0.2.7", a /32 or /128).
// Bits set past the prefix length are refused: "10.0.0.1/8" is more
// likely a typo than a wish for 10.0.0.0/8.
func ParseTrustedProxy(s string) (netip.Prefix, error) {
	if ip, err := netip.ParseAddr(s); err == nil && ip.Zone() == "" {
		ip = ip.Unmap()
		return netip.PrefixFrom(ip, ip.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a CIDR or an IP address", s)
	}
	if p != p.Masked() {
		return netip.Prefix{}, fmt.Errorf("%q has bits set past its prefix length (did you mean %s?)", s, p.Masked())
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("%q: write IPv4 networks as IPv4", s)
	}
	return p, nil
}
