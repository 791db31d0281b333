// Package config is stompbox's configuration: one YAML file, environment
// variables STOMPBOX_* and command-line flags, with the precedence flag >
// env > file > default. Every option is a field of Config; its YAML key,
// flag name and help come from the field's tags, and its environment
// variable from the flag name (-journal-dir: STOMPBOX_JOURNAL_DIR), so the
// three can never disagree. Load rejects unknown keys and bad values,
// naming the file and line, the variable or the flag they came from.
package config

import "time"

// Config is every setting of the stompbox command. Tags: yaml is the key
// within its section, flag the command-line name, help the one-line
// description (-h and docs/configuration.md).
type Config struct {
	Listen    Listen    `yaml:"listen"`
	TLS       TLS       `yaml:"tls"`
	WebSocket WebSocket `yaml:"websocket"`
	HTTP      HTTP      `yaml:"http"`
	Heartbeat Heartbeat `yaml:"heartbeat"`
	Limits    Limits    `yaml:"limits"`
	Auth      Auth      `yaml:"auth"`
	Journal   Journal   `yaml:"journal"`
	Log       Log       `yaml:"log"`
	Admin     Admin     `yaml:"admin"`
	Conn      Conn      `yaml:"connection"`
	Topics    Topics    `yaml:"topics"`
	Session   Session   `yaml:"session"`
	Presence  Presence  `yaml:"presence"`
	Dedupe    Dedupe    `yaml:"dedupe"`
	Cluster   Cluster   `yaml:"cluster"`
	Memory    Memory    `yaml:"memory"`
	// VirtualHosts are isolated namespaces of destinations besides "/".
	VirtualHosts []string `yaml:"virtual_hosts" flag:"virtual-hosts" help:"virtual hosts besides \"/\", each an isolated namespace chosen by the CONNECT host header; with any set, a CONNECT naming another host is refused (flag and env: comma-separated)"`
	// TrustedProxies are the load balancers whose word on the client's address is taken.
	TrustedProxies []string `yaml:"trusted_proxies" flag:"trusted-proxies" help:"CIDRs (or addresses) of load balancers and reverse proxies: from them the client address comes from Forwarded/X-Forwarded-For (WebSocket) or the PROXY header (listen.stomp_proxy_protocol), for per-IP limits and logs; nobody else's is trusted (flag and env: comma-separated)"`
	// ShutdownTimeout bounds graceful shutdown.
	ShutdownTimeout Duration `yaml:"shutdown_timeout" flag:"shutdown-timeout" help:"how long SIGTERM/SIGINT waits for clients to be told (server-shutdown), receipts to finish and the journal to close"`
	// ShutdownReconnectWindow spreads the reconnects after a shutdown.
	ShutdownReconnectWindow Duration `yaml:"shutdown_reconnect_window" flag:"shutdown-reconnect-window" help:"at shutdown each client's ERROR server-shutdown carries reconnect-after:<ms>, a delay of its own spread evenly over this window, so a restart does not bring every client back at once; 0: no reconnect-after"`
}

// Dedupe configures idempotent SEND (the idempotency-key header).
type Dedupe struct {
	Window         Duration `yaml:"window" flag:"dedupe-window" help:"a SEND repeating an idempotency-key its user sent to the same destination within this window gets its RECEIPT but is not enqueued again (memory only: a restart forgets the keys); 0: off"`
	MaxKeysPerUser int      `yaml:"max_keys_per_user" flag:"dedupe-max-keys-per-user" help:"idempotency keys remembered per user and virtual host; past it the oldest are forgotten first"`
}

// Listen holds the listener addresses; an empty address disables it.
type Listen struct {
	STOMP    string `yaml:"stomp" flag:"listen" help:"native STOMP over TCP address"`
	STOMPTLS string `yaml:"stomp_tls" flag:"tls-listen" help:"native STOMP over TLS address (needs tls.cert_file and tls.key_file)"`
	HTTP     string `yaml:"http" flag:"http-listen" help:"HTTP address: STOMP over WebSocket at websocket.path, the demo page at /"`
	HTTPS    string `yaml:"https" flag:"https-listen" help:"HTTPS address: STOMP over secure WebSocket (wss) and the demo page (needs tls.cert_file and tls.key_file)"`
	Admin    string `yaml:"admin" flag:"admin-listen" help:"admin HTTP address: /metrics, /healthz, /readyz, the admin API under /api/ (and /debug/pprof/ with admin.pprof)"`
	// STOMPProxyProtocol and STOMPTLSProxyProtocol expect a PROXY header from trusted proxies.
	STOMPProxyProtocol    bool `yaml:"stomp_proxy_protocol" flag:"proxy-protocol" help:"connections to listen.stomp from trusted_proxies must start with a PROXY protocol v1 or v2 header naming the client"`
	STOMPTLSProxyProtocol bool `yaml:"stomp_tls_proxy_protocol" flag:"tls-proxy-protocol" help:"connections to listen.stomp_tls from trusted_proxies must start with a PROXY protocol v1 or v2 header (before the TLS handshake)"`
}

// TLS is the certificate of the TLS listeners; SIGHUP reloads both files.
type TLS struct {
	CertFile   string `yaml:"cert_file" flag:"tls-cert" help:"PEM certificate chain for listen.stomp_tls and listen.https; reloaded on SIGHUP"`
	KeyFile    string `yaml:"key_file" flag:"tls-key" help:"PEM private key of tls.cert_file; reloaded on SIGHUP"`
	MinVersion string `yaml:"min_version" flag:"tls-min-version" help:"oldest TLS version accepted: 1.2 or 1.3"`
}

// WebSocket configures STOMP over WebSocket.
type WebSocket struct {
	Path           string   `yaml:"path" flag:"ws-path" help:"HTTP path that upgrades to STOMP over WebSocket"`
	AllowedOrigins []string `yaml:"allowed_origins" flag:"allowed-origins" help:"Origin values browsers may connect from (flag and env: comma-separated); * allows any; empty allows only pages from the same host"`
	PingInterval   Duration `yaml:"ping_interval" flag:"ws-ping-interval" help:"the server pings a WebSocket connection silent for this long (or for 3/5 of its negotiated heart-beat timeout, when shorter); browsers answer without running page scripts and any inbound byte, pong included, counts as liveness, so a throttled background tab stays connected; 0: no pings"`
}

// HTTP bounds the HTTP listeners (listen.http, listen.https, listen.admin).
type HTTP struct {
	AllowedHosts   []string `yaml:"allowed_hosts" flag:"allowed-hosts" help:"Host names (optionally :port) a page may connect from when websocket.allowed_origins is empty, besides loopback; the Origin must also match the Host (flag and env: comma-separated)"`
	IdleTimeout    Duration `yaml:"idle_timeout" flag:"http-idle-timeout" help:"closes a keep-alive HTTP connection idle between requests for this long"`
	ReadTimeout    Duration `yaml:"read_timeout" flag:"http-read-timeout" help:"time to read one HTTP request, headers and body (not a WebSocket after its upgrade)"`
	MaxHeaderBytes ByteSize `yaml:"max_header_bytes" flag:"http-max-header-bytes" help:"largest HTTP request header (431 past it)"`
}

// Heartbeat is what the server offers in CONNECTED.
type Heartbeat struct {
	Interval  Duration `yaml:"interval" flag:"heartbeat" help:"heart-beat interval the server asks clients to keep (it sends as often as a client asks, down to heartbeat.min_interval); 0 disables heart-beats both ways"`
	Tolerance float64  `yaml:"tolerance" flag:"heartbeat-tolerance" help:"a client silent for its negotiated interval times this is closed (heartbeat-timeout); at least 1"`
	// MinInterval is the fastest the server sends heart-beats to a client
	// that asks for them.
	MinInterval Duration `yaml:"min_interval" flag:"heartbeat-min-interval" help:"shortest interval the server sends heart-beats at: a client asking for them every cy ms gets one every max(cy, this)"`
}

// Limits bound what one client or destination may cost.
type Limits struct {
	ConnectTimeout       Duration `yaml:"connect_timeout" flag:"connect-timeout" help:"time from accept to CONNECT (connect-timeout)"`
	MaxBody              ByteSize `yaml:"max_body" flag:"max-body" help:"largest frame body (frame-too-large)"`
	MaxHeaders           int      `yaml:"max_headers" flag:"max-headers" help:"most header lines per frame"`
	MaxHeaderBytes       ByteSize `yaml:"max_header_bytes" flag:"max-header-bytes" help:"all header lines of one frame together"`
	MaxHeaderLine        ByteSize `yaml:"max_header_line" flag:"max-header-line" help:"one header line as sent"`
	MaxSubscriptions     int      `yaml:"max_subscriptions" flag:"max-subscriptions" help:"subscriptions per connection"`
	MaxOutboxBytes       ByteSize `yaml:"max_outbox_bytes" flag:"max-outbox-bytes" help:"bytes queued to one connection; past it a topic subscriber is a slow consumer"`
	MaxConnectionBytes   ByteSize `yaml:"max_connection_bytes" flag:"max-connection-bytes" help:"the one byte budget of a connection: its outbox, control frames, unacknowledged topic messages, open transactions and input held while blocked; output past it is a slow consumer, input past it blocks the producer"`
	MaxIDLength          int      `yaml:"max_id_length" flag:"max-id-length" help:"longest subscription, receipt or transaction id a client may use"`
	MaxQueueMessages     int      `yaml:"max_queue_messages" flag:"max-queue-messages" help:"messages one queue may hold (ready and unacknowledged)"`
	MaxQueueBytes        ByteSize `yaml:"max_queue_bytes" flag:"max-queue-bytes" help:"bytes one queue may hold"`
	MaxQueues            int      `yaml:"max_queues" flag:"max-queues" help:"queues that may exist at once"`
	MaxTotalQueuedBytes  ByteSize `yaml:"max_total_queued_bytes" flag:"max-total-queued-bytes" help:"bytes all queues together may hold"`
	MaxTopicUnacked      int      `yaml:"max_topic_unacked" flag:"max-topic-unacked" help:"unacknowledged messages of one client-ack topic subscription without prefetch-count"`
	MaxRedeliveries      int      `yaml:"max_redeliveries" flag:"max-redeliveries" help:"redeliveries before a message moves to /queue/DLQ.<name>; -1 never dead-letters"`
	MaxTransactions      int      `yaml:"max_transactions" flag:"max-transactions" help:"open transactions per connection"`
	MaxTransactionFrames int      `yaml:"max_transaction_frames" flag:"max-transaction-frames" help:"SEND/ACK/NACK frames one transaction may hold"`
	MaxConnections       int      `yaml:"max_connections" flag:"max-connections" help:"connections open at once, all transports; -1: unlimited"`
	MaxConnectionsPerIP  int      `yaml:"max_connections_per_ip" flag:"max-connections-per-ip" help:"connections open at once from one IP address; -1: unlimited"`
	ConnectionRatePerIP  float64  `yaml:"connection_rate_per_ip" flag:"connection-rate-per-ip" help:"new connections (and so CONNECT attempts) per second from one IP address, with a burst of twice that; -1: unlimited"`
	MaxFramesPerSecond   int      `yaml:"max_frames_per_second" flag:"max-frames-per-second" help:"frames one connection may send per second (burst: twice that); past it the connection is throttled (full_policy block) or gets ERROR limit-exceeded (error); 0: unlimited"`
	MaxBytesPerSecond    ByteSize `yaml:"max_bytes_per_second" flag:"max-bytes-per-second" help:"bytes one connection may send per second (burst: twice that); past it the connection is throttled (full_policy block) or gets ERROR limit-exceeded (error); 0: unlimited"`
	FullPolicy           string   `yaml:"full_policy" flag:"full-policy" help:"what a producer meets when a queue, the total, the journal's disk budget or its rate limit is full: block (slowed down: the broker stops reading it until room frees) or error (ERROR limit-exceeded, retryable)"`
	BlockTimeout         Duration `yaml:"block_timeout" flag:"block-timeout" help:"with full_policy block, a connection blocked longer gets ERROR limit-exceeded (retryable); 0: no limit"`
	MaxDestinations      int      `yaml:"max_destinations_per_connection" flag:"max-destinations-per-connection" help:"destinations (queues, topics, durable subscriptions) one connection may create; 0: unlimited"`
	MaxQueuesPerUser     int      `yaml:"max_queues_per_user" flag:"max-queues-per-user" help:"queues (named and temporary) one user may have created and not yet retired, per virtual host; past it ERROR limit-exceeded; 0: unlimited"`
	MaxDurablesPerUser   int      `yaml:"max_durables_per_user" flag:"max-durables-per-user" help:"durable subscriptions one user may own, per virtual host (recovered ones count); past it ERROR limit-exceeded; 0: unlimited"`
	DurableIdleTTL       Duration `yaml:"durable_idle_ttl" flag:"durable-idle-ttl" help:"a durable subscription no connection consumed for this long is removed with its backlog; 0: never"`
}

// Auth configures authentication and authorization (docs/security.md).
type Auth struct {
	Anonymous       bool     `yaml:"anonymous" flag:"auth-anonymous" help:"accept clients that present no credentials, as user anonymous (development; logged as a warning)"`
	UsersFile       string   `yaml:"users_file" flag:"auth-users-file" help:"users file of bcrypt hashes (stompbox passwd writes it); reloaded on SIGHUP"`
	JWTSecretFile   string   `yaml:"jwt_secret_file" flag:"auth-jwt-secret-file" help:"file holding the HS256 secret that signs JWT passcodes"`
	JWTKeysFile     string   `yaml:"jwt_keys_file" flag:"auth-jwt-keys-file" help:"PEM or JWKS file of the RS256/ES256 public keys that sign JWT passcodes; reloaded on SIGHUP"`
	JWTAudience     string   `yaml:"jwt_audience" flag:"auth-jwt-audience" help:"aud a JWT must carry (required with a JWT key)"`
	JWTIssuer       string   `yaml:"jwt_issuer" flag:"auth-jwt-issuer" help:"iss a JWT must carry; empty: not checked"`
	JWTUserClaim    string   `yaml:"jwt_user_claim" flag:"auth-jwt-user-claim" help:"claim naming the user"`
	JWTRolesClaim   string   `yaml:"jwt_roles_claim" flag:"auth-jwt-roles-claim" help:"claim listing the user's roles"`
	JWTPublishClaim string   `yaml:"jwt_publish_claim" flag:"auth-jwt-publish-claim" help:"claim listing destination patterns the token may publish to"`
	JWTSubscribe    string   `yaml:"jwt_subscribe_claim" flag:"auth-jwt-subscribe-claim" help:"claim listing destination patterns the token may subscribe to"`
	JWTVHostsClaim  string   `yaml:"jwt_vhosts_claim" flag:"auth-jwt-vhosts-claim" help:"claim listing the virtual hosts the token may use"`
	ACLFile         string   `yaml:"acl_file" flag:"auth-acl-file" help:"authorization rules (publish/subscribe patterns per user, role or anonymous); with users or JWT configured, what no rule or token grants is denied; reloaded on SIGHUP"`
	TokenQuery      string   `yaml:"token_query_param" flag:"auth-token-query" help:"WebSocket upgrade query parameter carrying a JWT, checked before the upgrade; empty: off"`
	TokenCookie     string   `yaml:"token_cookie" flag:"auth-token-cookie" help:"WebSocket upgrade cookie carrying a JWT; empty: off"`
	TokenRequired   bool     `yaml:"token_required" flag:"auth-token-required" help:"refuse WebSocket upgrades without a valid token (HTTP 401) before they cost a session"`
	FailureDelay    Duration `yaml:"failure_delay" flag:"auth-failure-delay" help:"how long a client whose credentials were refused waits for its ERROR"`
	// FailureBackoffAfter and FailureBackoffMax make one address that
	// keeps failing wait, so it cannot keep the bcrypt checks busy.
	FailureBackoffAfter int      `yaml:"failure_backoff_after" flag:"auth-failure-backoff-after" help:"consecutive authentication failures from one address (IPv6: its /64) after which its attempts are refused unchecked (retryable, saying when) for 2s, doubling with each further failure; 0 disables"`
	FailureBackoffMax   Duration `yaml:"failure_backoff_max" flag:"auth-failure-backoff-max" help:"longest such wait; an address quiet this long is forgotten"`
	// JWTLeeway is the clock skew allowed on a token's exp and nbf; a
	// session ends at exp plus it.
	JWTLeeway Duration `yaml:"jwt_leeway" flag:"auth-jwt-leeway" help:"clock skew allowed on a JWT's exp and nbf; a session ends (token-expired) at exp plus this"`
}

// Journal configures the disk journal of persistent messages.
type Journal struct {
	Dir          string   `yaml:"dir" flag:"journal-dir" help:"directory of the disk journal for persistent messages; empty keeps everything in memory"`
	Sync         string   `yaml:"sync" flag:"journal-sync" help:"always (RECEIPT after fsync), interval (fsync every journal.sync_interval) or never (the OS decides)"`
	SyncInterval Duration `yaml:"sync_interval" flag:"journal-sync-interval" help:"fsync period of journal.sync interval"`
	MaxBytes     ByteSize `yaml:"max_bytes" flag:"journal-max-bytes" help:"disk budget; a persistent SEND past it gets ERROR limit-exceeded; 0 is unlimited"`
	SegmentSize  ByteSize `yaml:"segment_size" flag:"journal-segment-size" help:"size of one journal segment file"`
	MinFree      ByteSize `yaml:"min_free" flag:"journal-min-free" help:"without journal.max_bytes: while the journal's file system has less free space than this, new persistent messages are refused (producers blocked under full_policy block) and acknowledgements still journaled; 0 disables"`
}

// Log configures log/slog on stderr.
type Log struct {
	Level  string `yaml:"level" flag:"log-level" help:"debug, info, warn or error"`
	Format string `yaml:"format" flag:"log-format" help:"text or json"`
}

// Admin configures the admin listener.
type Admin struct {
	Pprof              bool `yaml:"pprof" flag:"pprof" help:"serve net/http/pprof at /debug/pprof/ on the admin listener"`
	DestinationMetrics int  `yaml:"destination_metrics" flag:"metrics-destinations" help:"how many destinations, deepest first, get their own stompbox_destination_* series (names are unbounded, so 0: none); at most 1000"`
	// The admin API's bearer tokens (docs/operations.md, "Admin API"):
	// secrets, never printed.
	Token     string `yaml:"token" flag:"admin-token" secret:"true" help:"bearer token of the admin API's role admin (the read endpoints and the actions); at least 16 characters; prefer the environment or the file to the flag, which process lists show"`
	ReadToken string `yaml:"read_token" flag:"admin-read-token" secret:"true" help:"bearer token of the admin API's role read (the read endpoints); at least 16 characters"`
}

// Session configures session recovery.
type Session struct {
	ResumeGrace    Duration `yaml:"resume_grace" flag:"session-resume-grace" help:"how long a session whose connection dropped stays resumable with the resume-token its CONNECTED carried (subscriptions, messages that arrived meanwhile, unacknowledged messages); 0 disables session recovery"`
	MaxParked      int      `yaml:"max_parked" flag:"session-max-parked" help:"most sessions parked for a resume at once (each may hold up to limits.max_connection_bytes); past it a dropped session is released at once"`
	MaxParkedPerIP int      `yaml:"max_parked_per_ip" flag:"session-max-parked-per-ip" help:"most sessions parked at once for one client address; past it that address's oldest parked session is released"`
}

// Conn tunes every connection.
type Conn struct {
	WriteTimeout   Duration `yaml:"write_timeout" flag:"write-timeout" help:"one socket write; a peer that reads nothing for this long is dropped"`
	Linger         Duration `yaml:"linger" flag:"linger" help:"after the server closes a connection it reads and discards for this long, so the last frame is not lost to a TCP reset"`
	ReadBufferSize ByteSize `yaml:"read_buffer_size" flag:"read-buffer-size" help:"a connection's read buffer, taken from a pool only while bytes arrive (epoll driver) or held for the connection's life (goroutines driver)"`
	Driver         string   `yaml:"driver" flag:"connection-driver" help:"epoll (Linux: an idle connection holds no goroutine and no buffer; TLS connections use goroutines) or goroutines (a read loop and a writer per connection)"`
}

// Memory configures how the process gives memory back to the system.
type Memory struct {
	ReleaseInterval Duration `yaml:"release_interval" flag:"memory-release-interval" help:"how often the broker checks whether it has gone quiet after a burst (connections opened, a backlog drained) and, if so, collects the garbage the burst left and returns it to the system; an idle broker allocates nothing, so otherwise that memory (up to GOGC percent of the live heap) stays; 0: never"`
}

// Presence configures presence sets: SUBSCRIBE with presence:true, and the
// /presence/<topic> streams (docs/compliance.md, "Presence").
type Presence struct {
	Grace      Duration `yaml:"grace" flag:"presence-grace" help:"a presence member whose last presence subscription ended leaves only after this long: a client back within it makes no leave and no join; 0: it leaves at once"`
	MaxMembers int      `yaml:"max_members" flag:"presence-max-members" help:"members of one topic's presence set (those in their grace period included); past it SUBSCRIBE presence:true gets ERROR limit-exceeded (retryable)"`
	MaxSets    int      `yaml:"max_sets" flag:"presence-max-sets" help:"presence sets (topics with members or /presence/ subscribers) per virtual host; past it ERROR limit-exceeded (retryable)"`
}

// Default is the configuration with nothing set: what `make run` serves.
func Default() Config {
	return Config{
		Listen:    Listen{STOMP: ":61613", HTTP: ":61614", Admin: "127.0.0.1:61680"},
		TLS:       TLS{MinVersion: "1.2"},
		WebSocket: WebSocket{Path: "/ws", PingInterval: Duration(25 * time.Second)},
		HTTP: HTTP{
			AllowedHosts: []string{"localhost", "127.0.0.1", "[::1]"},
			IdleTimeout:  Duration(120 * time.Second), ReadTimeout: Duration(30 * time.Second), MaxHeaderBytes: 16 << 10,
		},
		Heartbeat: Heartbeat{Interval: Duration(10 * time.Second), Tolerance: 2, MinInterval: Duration(time.Second)},
		Limits: Limits{
			ConnectTimeout:       Duration(5 * time.Second),
			MaxBody:              4 << 20,
			MaxHeaders:           128,
			MaxHeaderBytes:       64 << 10,
			MaxHeaderLine:        8 << 10,
			MaxSubscriptions:     1024,
			MaxOutboxBytes:       8 << 20,
			MaxConnectionBytes:   16 << 20,
			MaxIDLength:          256,
			MaxQueueMessages:     100_000,
			MaxQueueBytes:        256 << 20,
			MaxQueues:            10_000,
			MaxTotalQueuedBytes:  1 << 30,
			MaxTopicUnacked:      10_000,
			MaxRedeliveries:      5,
			MaxTransactions:      16,
			MaxTransactionFrames: 10_000,
			MaxConnections:       100_000,
			MaxConnectionsPerIP:  1000,
			ConnectionRatePerIP:  50,
			MaxFramesPerSecond:   20_000,
			MaxBytesPerSecond:    64 << 20,
			MaxDestinations:      1000,
			MaxQueuesPerUser:     100,
			MaxDurablesPerUser:   100,
			FullPolicy:           "block",
		},
		Auth: Auth{
			JWTUserClaim: "sub", JWTRolesClaim: "roles", JWTPublishClaim: "publish",
			JWTSubscribe: "subscribe", JWTVHostsClaim: "vhosts",
			FailureDelay:        Duration(time.Second),
			FailureBackoffAfter: 5, FailureBackoffMax: Duration(time.Minute),
			JWTLeeway: Duration(30 * time.Second),
		},
		Journal: Journal{Sync: "always", SyncInterval: Duration(100 * time.Millisecond), SegmentSize: 64 << 20, MinFree: 50 << 20},
		Log:     Log{Level: "info", Format: "text"},
		Conn: Conn{
			WriteTimeout:   Duration(10 * time.Second),
			Linger:         Duration(time.Second),
			ReadBufferSize: 4 << 10,
			Driver:         "epoll",
		},
		Presence:                Presence{Grace: Duration(10 * time.Second), MaxMembers: 1000, MaxSets: 10_000},
		Memory:                  Memory{ReleaseInterval: Duration(10 * time.Second)},
		ShutdownTimeout:         Duration(10 * time.Second),
		Session:                 Session{ResumeGrace: Duration(2 * time.Minute), MaxParked: 10_000, MaxParkedPerIP: 100},
		Topics:                  Topics{HistoryMaxBytes: 256 << 20},
		ShutdownReconnectWindow: Duration(10 * time.Second),
		Dedupe:                  Dedupe{Window: Duration(2 * time.Minute), MaxKeysPerUser: 10_000},
		Cluster: Cluster{Name: "stompbox", AckWait: Duration(30 * time.Second), PublishTimeout: Duration(5 * time.Second),
			PresenceTTL: Duration(30 * time.Second)},
	}
}
