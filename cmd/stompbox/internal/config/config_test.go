package config

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/persistence"
	"github.com/stompbox/stompbox/server"
	"github.com/stompbox/stompbox/server/auth"
	"github.com/stompbox/stompbox/wsadapter"
)

// files serves config files from memory.
func files(m map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		if s, ok := m[name]; ok {
			return []byte(s), nil
		}
		return nil, os.ErrNotExist
	}
}

// load runs Load with file as stompbox.yaml; anonymous authentication is
// on (through the environment) unless env says something about auth.
func load(t *testing.T, args, env []string, file string) (*Loaded, error) {
	t.Helper()
	if !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, "STOMPBOX_AUTH") }) &&
		!strings.Contains(file, "auth:") {
		env = append(env, "STOMPBOX_AUTH_ANONYMOUS=true")
	}
	return Load(args, env, files(map[string]string{"stompbox.yaml": file}), io.Discard)
}

func TestPrecedence(t *testing.T) {
	file := "listen:\n  stomp: \":1001\"\n  http: \":2001\"\n  admin: \":3001\"\n"
	env := []string{"STOMPBOX_CONFIG=stompbox.yaml", "STOMPBOX_HTTP_LISTEN=:2002", "STOMPBOX_ADMIN_LISTEN=:3002", "PATH=/bin"}
	args := []string{"-admin-listen", ":3003"}
	l, err := load(t, args, env, file)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		key, got, want, source string
	}{
		{"listen.stomp", l.Config.Listen.STOMP, ":1001", "stompbox.yaml:2"},
		{"listen.http", l.Config.Listen.HTTP, ":2002", "env STOMPBOX_HTTP_LISTEN"},
		{"listen.admin", l.Config.Listen.Admin, ":3003", "flag -admin-listen"},
		{"journal.sync", l.Config.Journal.Sync, "always", "default"},
	}
	for _, tt := range tests {
		if tt.got != tt.want || l.SourceOf(tt.key).String() != tt.source {
			t.Errorf("%s = %q from %s, want %q from %s", tt.key, tt.got, l.SourceOf(tt.key), tt.want, tt.source)
		}
	}
	if l.File != "stompbox.yaml" {
		t.Errorf("File = %q, want the one STOMPBOX_CONFIG names", l.File)
	}
}

func TestValueForms(t *testing.T) {
	file := `
websocket:
  allowed_origins: ["https://a.example", "https://*.b.example"]
limits:
  max_body: 2MiB
  max_queue_bytes: 1000000
  connect_timeout: 1m30s
heartbeat:
  tolerance: 2.5
admin:
  pprof: true
journal:
  dir:
`
	l, err := load(t, []string{"-config", "stompbox.yaml", "-max-outbox-bytes", "3kB", "-allowed-origins", "https://c.example, https://d.example"},
		[]string{"STOMPBOX_HEARTBEAT=0"}, file)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.Limits.MaxBody != 2<<20 || c.Limits.MaxQueueBytes != 1e6 || c.Limits.MaxOutboxBytes != 3000 {
		t.Errorf("sizes: body %d, queue %d, outbox %d", c.Limits.MaxBody, c.Limits.MaxQueueBytes, c.Limits.MaxOutboxBytes)
	}
	if c.Limits.ConnectTimeout != Duration(90*time.Second) || c.Heartbeat.Interval != 0 || c.Heartbeat.Tolerance != 2.5 || !c.Admin.Pprof {
		t.Errorf("connect %v, heartbeat %v, tolerance %v, pprof %v", c.Limits.ConnectTimeout, c.Heartbeat.Interval, c.Heartbeat.Tolerance, c.Admin.Pprof)
	}
	if want := []string{"https://c.example", "https://d.example"}; !reflect.DeepEqual(c.WebSocket.AllowedOrigins, want) {
		t.Errorf("origins %q, want the flag's %q", c.WebSocket.AllowedOrigins, want)
	}
}

// TestRejections: every way a value is refused, with the place it came from.
func TestRejections(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		file string
		want []string // each must appear in the error
	}{
		{"unknown section", nil, nil, "jurnal:\n  dir: x\n", []string{`stompbox.yaml:1: jurnal: unknown key (valid here: listen, tls,`}},
		{"unknown key", nil, nil, "journal:\n  sync: always\n  dirr: /x\n", []string{`stompbox.yaml:3: journal.dirr: unknown key (valid here: dir, sync, sync_interval, max_bytes, segment_size, min_free)`}},
		{"duplicate key", nil, nil, "log:\n  level: info\n  level: debug\n", []string{"stompbox.yaml:3: log.level: duplicate key"}},
		{"bad duration", nil, nil, "journal:\n  sync_interval: soon\n", []string{`stompbox.yaml:2: journal.sync_interval: invalid duration "soon"`}},
		{"bad size", nil, nil, "limits:\n  max_body: 4 megs\n", []string{`stompbox.yaml:2: limits.max_body: invalid size "4 megs"`}},
		{"bad integer", nil, nil, "limits:\n  max_headers: many\n", []string{`stompbox.yaml:2: limits.max_headers: invalid integer "many"`}},
		{"bad boolean", nil, nil, "admin:\n  pprof: sometimes\n", []string{`stompbox.yaml:2: admin.pprof: invalid boolean "sometimes"`}},
		{"mapping for a value", nil, nil, "log:\n  level:\n    x: y\n", []string{"stompbox.yaml:3: log.level: want a single value (got a mapping)"}},
		{"value for a section", nil, nil, "journal: /var/lib\n", []string{`stompbox.yaml:1: journal: want a mapping of keys (got "/var/lib")`}},
		{"scalar for a list", nil, nil, "websocket:\n  allowed_origins: https://a.example\n", []string{"stompbox.yaml:2: websocket.allowed_origins: want a list"}},
		{"missing value", nil, nil, "limits:\n  max_headers:\n", []string{"stompbox.yaml:2: limits.max_headers: missing value"}},
		{"not YAML", nil, nil, "listen: [\n", []string{"stompbox.yaml: yaml:"}},
		{"unknown sync policy", nil, nil, "journal:\n  sync: sometimes\n", []string{`stompbox.yaml:2: journal.sync: "sometimes" is not one of always, interval, never`}},
		{"bad address", nil, nil, "listen:\n  stomp: localhost\n", []string{`stompbox.yaml:2: listen.stomp: invalid address "localhost"`}},
		{"no listener", []string{"-listen", "", "-http-listen", ""}, nil, "", []string{"listen: every STOMP listener is disabled"}},
		{"tls without cert", []string{"-tls-listen", ":61612"}, nil, "", []string{"default: tls.cert_file: required by listen.stomp_tls", "default: tls.key_file: required"}},
		{"bad tls version", nil, []string{"STOMPBOX_TLS_MIN_VERSION=1.0"}, "", []string{`env STOMPBOX_TLS_MIN_VERSION: tls.min_version: "1.0" is not one of 1.2, 1.3`}},
		{"bad log level", []string{"-log-level", "loud"}, nil, "", []string{`flag -log-level: log.level: "loud" is not one of debug, info, warn, error`}},
		{"bad log format", nil, nil, "log:\n  format: xml\n", []string{`stompbox.yaml:2: log.format: "xml" is not one of text, json`}},
		{"bad env value", nil, []string{"STOMPBOX_MAX_BODY=big"}, "", []string{`env STOMPBOX_MAX_BODY: limits.max_body: invalid size "big"`}},
		{"bad flag value", []string{"-heartbeat", "often"}, nil, "", []string{`flag -heartbeat: heartbeat.interval: invalid duration "often"`}},
		{"tolerance below 1", nil, nil, "heartbeat:\n  tolerance: 0.5\n", []string{"stompbox.yaml:2: heartbeat.tolerance: must be at least 1 (got 0.5)"}},
		{"negative heartbeat", []string{"-heartbeat", "-1s"}, nil, "", []string{"flag -heartbeat: heartbeat.interval: must not be negative"}},
		{"zero limit", nil, nil, "limits:\n  max_subscriptions: 0\n", []string{"stompbox.yaml:2: limits.max_subscriptions: must be positive (got 0)"}},
		{"redeliveries below -1", []string{"-max-redeliveries", "-2"}, nil, "", []string{"flag -max-redeliveries: limits.max_redeliveries: must be -1"}},
		{"header line over header bytes", nil, nil, "limits:\n  max_header_line: 128KiB\n", []string{"stompbox.yaml:2: limits.max_header_line: must not exceed limits.max_header_bytes (64KiB)"}},
		{"body over 1GiB", []string{"-max-body", "2GiB"}, nil, "", []string{"flag -max-body: limits.max_body: must be at most 1GiB"}},
		{"ws path", nil, nil, "websocket:\n  path: ws\n", []string{`stompbox.yaml:2: websocket.path: must start with / (got "ws")`}},
		{"bad origin", nil, nil, "websocket:\n  allowed_origins: [example.com]\n", []string{`stompbox.yaml:2: websocket.allowed_origins: "example.com" is not an origin`}},
		{"destination metrics cap", []string{"-metrics-destinations", "5000"}, nil, "", []string{"flag -metrics-destinations: admin.destination_metrics: must be between 0 and 1000 (got 5000)"}},
		{"pprof without admin", []string{"-pprof", "-admin-listen", ""}, nil, "", []string{"flag -pprof: admin.pprof: needs listen.admin"}},
		{"short admin token", nil, []string{"STOMPBOX_ADMIN_TOKEN=short"}, "", []string{"env STOMPBOX_ADMIN_TOKEN: admin.token: must be at least 16 characters (got 5)"}},
		{"admin token with a space", []string{"-admin-read-token", "0123456789 abcdef"}, nil, "", []string{"flag -admin-read-token: admin.read_token: must be printable ASCII without spaces"}},
		{"same admin tokens", nil, []string{"STOMPBOX_ADMIN_TOKEN=0123456789abcdef", "STOMPBOX_ADMIN_READ_TOKEN=0123456789abcdef"}, "", []string{"env STOMPBOX_ADMIN_READ_TOKEN: admin.read_token: must differ from admin.token"}},
		{"admin token without admin", []string{"-admin-token", "0123456789abcdef", "-admin-listen", ""}, nil, "", []string{"flag -admin-token: admin.token: needs listen.admin"}},
		{"zero shutdown timeout", nil, nil, "shutdown_timeout: 0s\n", []string{"stompbox.yaml:1: shutdown_timeout: must be positive"}},
		{"small segment", nil, nil, "journal:\n  segment_size: 1KiB\n", []string{"stompbox.yaml:2: journal.segment_size: must be at least 4KiB"}},
		{"several at once", nil, nil, "log:\n  level: loud\n  format: xml\n", []string{"stompbox.yaml:2: log.level", "stompbox.yaml:3: log.format"}},
		{"stray argument", []string{"run"}, nil, "", []string{`unexpected argument "run"`}},
		{"no authentication", nil, []string{"STOMPBOX_AUTH_ANONYMOUS=false"}, "", []string{"default: auth: no authentication configured"}},
		{"two JWT keys", nil, nil, "auth:\n  jwt_secret_file: s\n  jwt_keys_file: k\n  jwt_audience: a\n", []string{"stompbox.yaml:2: auth.jwt_secret_file: set either"}},
		{"JWT without audience", nil, nil, "auth:\n  jwt_keys_file: k\n", []string{"default: auth.jwt_audience: required with a JWT key"}},
		{"token without JWT", nil, nil, "auth:\n  users_file: u\n  token_query_param: access_token\n", []string{"stompbox.yaml:3: auth.token_query_param: needs a JWT key"}},
		{"token required without a source", nil, nil, "auth:\n  jwt_keys_file: k\n  jwt_audience: a\n  token_required: true\n", []string{"stompbox.yaml:4: auth.token_required: needs auth.token_query_param"}},
		{"empty claim", nil, nil, "auth:\n  anonymous: true\n  jwt_user_claim: \"\"\n", []string{"stompbox.yaml:3: auth.jwt_user_claim: must name a claim"}},
		{"long failure delay", nil, nil, "auth:\n  anonymous: true\n  failure_delay: 1m\n", []string{"stompbox.yaml:3: auth.failure_delay: must be between 0 and 10s"}},
		{"bad virtual host", []string{"-virtual-hosts", "a,b\tc"}, nil, "", []string{`flag -virtual-hosts: virtual_hosts: "b\tc" is not a virtual host name`}},
		{"zero connection cap", nil, nil, "limits:\n  max_connections_per_ip: 0\n", []string{"stompbox.yaml:2: limits.max_connections_per_ip: must be positive, or -1"}},
		{"negative frame rate", []string{"-max-frames-per-second", "-5"}, nil, "", []string{"flag -max-frames-per-second: limits.max_frames_per_second: must not be negative"}},
		{"bad trusted proxy", nil, nil, "trusted_proxies: [\"10.0.0.0/8\", \"10.0.0.1/8\", \"proxy.example\"]\n", []string{
			`stompbox.yaml:1: trusted_proxies: "10.0.0.1/8" has bits set past its prefix length (did you mean 10.0.0.0/8?)`,
			`stompbox.yaml:1: trusted_proxies: "proxy.example" is not a CIDR or an IP address`}},
		{"bad allowed host", nil, nil, "http:\n  allowed_hosts:\n    - chat.example.com:8443\n    - http://chat.example.com\n    - \"::1\"\n", []string{
			`stompbox.yaml:3: http.allowed_hosts: "http://chat.example.com" is not a host`, `stompbox.yaml:3: http.allowed_hosts: "::1" is not a host`}},
		{"tiny http header bound", []string{"-http-max-header-bytes", "100"}, nil, "", []string{"flag -http-max-header-bytes: http.max_header_bytes: must be between 1KiB and 1MiB"}},
		{"proxy protocol without trusted proxies", []string{"-proxy-protocol"}, nil, "", []string{"trusted_proxies: required by listen.stomp_proxy_protocol"}},
		{"unknown flag", []string{"-jornal-dir", "x"}, nil, "", []string{"flag provided but not defined: -jornal-dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := tt.args
			if tt.file != "" {
				args = append([]string{"-config", "stompbox.yaml"}, args...)
			}
			_, err := load(t, args, tt.env, tt.file)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\ndoes not contain\n%s", err, w)
				}
			}
		})
	}
}

func TestMissingConfigFile(t *testing.T) {
	_, err := load(t, []string{"-config", "nowhere.yaml"}, nil, "")
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error", err)
	}
}

func TestUnknownEnvIsReportedNotFatal(t *testing.T) {
	l, err := load(t, nil, []string{"STOMPBOX_SERVICE_HOST=10.0.0.1", "STOMPBOX_JOURNAL_DIRR=/x", "OTHER=1",
		"STOMPBOX_ADMIN_URL=http://127.0.0.1:1", "STOMPBOX_ADMIN_PASSWORD=x"}, "") // ctl's own are known
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"STOMPBOX_JOURNAL_DIRR", "STOMPBOX_SERVICE_HOST"}; !reflect.DeepEqual(l.UnknownEnv, want) {
		t.Errorf("UnknownEnv = %q, want %q", l.UnknownEnv, want)
	}
}

func TestHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := Load([]string{"-h"}, nil, files(nil), &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("got %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-journal-dir", "journal.dir", "STOMPBOX_JOURNAL_DIR", "-print-config", "-config"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("-h output lacks %q", want)
		}
	}
}

// TestPrintConfigRoundTrip: -print-config output is a config file that
// loads back to the same configuration, and says where each value came from.
func TestPrintConfigRoundTrip(t *testing.T) {
	l, err := load(t, []string{"-config", "stompbox.yaml", "-max-body", "1MiB", "-allowed-origins", "https://a.example,https://b.example"},
		[]string{"STOMPBOX_LOG_FORMAT=json"}, "journal:\n  dir: \"/var/lib/stompbox\"\n")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := l.Print(&out); err != nil {
		t.Fatal(err)
	}
	printed := out.String()
	for _, line := range []string{
		`  max_body: 1MiB`, `# flag -max-body`,
		`  format: "json"`, `# env STOMPBOX_LOG_FORMAT`,
		`  dir: "/var/lib/stompbox"`, `# stompbox.yaml:2`,
		`  allowed_origins: ["https://a.example", "https://b.example"]`,
		`  stomp: ":61613"`, `shutdown_timeout: 10s`,
	} {
		if !strings.Contains(printed, line) {
			t.Errorf("-print-config output lacks %q:\n%s", line, printed)
		}
	}
	again, err := Load([]string{"-config", "printed.yaml"}, nil, files(map[string]string{"printed.yaml": printed}), io.Discard)
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, printed)
	}
	if !reflect.DeepEqual(again.Config, l.Config) {
		t.Errorf("round trip changed the configuration:\n%+v\n%+v", again.Config, l.Config)
	}
	for _, o := range Options() {
		if again.SourceOf(o.Key).Kind != FromFile {
			t.Errorf("%s was not in the printed file", o.Key)
		}
	}
}

// TestDefaultsMatchTheLibraries: the command's defaults are the packages'
// own, so documenting one documents both.
func TestDefaultsMatchTheLibraries(t *testing.T) {
	d := Default()
	lim := frames.Limits{}.WithDefaults()
	pairs := []struct {
		name      string
		got, want int64
	}{
		{"max_body", int64(d.Limits.MaxBody), int64(lim.MaxBody)},
		{"max_headers", int64(d.Limits.MaxHeaders), int64(lim.MaxHeaders)},
		{"max_header_bytes", int64(d.Limits.MaxHeaderBytes), int64(lim.MaxHeaderBytes)},
		{"max_header_line", int64(d.Limits.MaxHeaderLine), int64(lim.MaxHeaderLine)},
		{"heartbeat", int64(d.Heartbeat.Interval), int64(broker.DefaultHeartBeat)},
		{"connect_timeout", int64(d.Limits.ConnectTimeout), int64(broker.DefaultConnectTimeout)},
		{"max_subscriptions", int64(d.Limits.MaxSubscriptions), broker.DefaultMaxSubscriptions},
		{"max_outbox_bytes", int64(d.Limits.MaxOutboxBytes), broker.DefaultMaxOutboxBytes},
		{"max_connection_bytes", int64(d.Limits.MaxConnectionBytes), broker.DefaultMaxConnectionBytes},
		{"heartbeat.min_interval", int64(d.Heartbeat.MinInterval), int64(broker.DefaultHeartbeatMinInterval)},
		{"auth.failure_backoff_after", int64(d.Auth.FailureBackoffAfter), auth.DefaultBackoffAfter},
		{"auth.failure_backoff_max", int64(d.Auth.FailureBackoffMax), int64(auth.DefaultBackoffMax)},
		{"auth.jwt_leeway", int64(d.Auth.JWTLeeway), int64(auth.DefaultLeeway)},
		{"max_id_length", int64(d.Limits.MaxIDLength), broker.DefaultMaxIDLength},
		{"max_queue_messages", int64(d.Limits.MaxQueueMessages), broker.DefaultMaxQueueMessages},
		{"max_queue_bytes", int64(d.Limits.MaxQueueBytes), broker.DefaultMaxQueueBytes},
		{"max_queues", int64(d.Limits.MaxQueues), broker.DefaultMaxQueues},
		{"max_total_queued_bytes", int64(d.Limits.MaxTotalQueuedBytes), broker.DefaultMaxTotalQueuedBytes},
		{"max_topic_unacked", int64(d.Limits.MaxTopicUnacked), broker.DefaultMaxTopicUnacked},
		{"topics.history_max_bytes", int64(d.Topics.HistoryMaxBytes), broker.DefaultMaxHistoryBytes},
		{"max_redeliveries", int64(d.Limits.MaxRedeliveries), broker.DefaultMaxRedeliveries},
		{"max_transactions", int64(d.Limits.MaxTransactions), broker.DefaultMaxTransactions},
		{"max_transaction_frames", int64(d.Limits.MaxTransactionFrames), broker.DefaultMaxTransactionFrames},
		{"max_queues_per_user", int64(d.Limits.MaxQueuesPerUser), broker.DefaultMaxQueuesPerUser},
		{"max_durables_per_user", int64(d.Limits.MaxDurablesPerUser), broker.DefaultMaxDurablesPerUser},
		{"durable_idle_ttl", int64(d.Limits.DurableIdleTTL), int64(broker.Config{}.DurableIdleTTL)},
		{"session.resume_grace", int64(d.Session.ResumeGrace), int64(broker.DefaultResumeGrace)},
		{"session.max_parked", int64(d.Session.MaxParked), broker.DefaultMaxParkedSessions},
		{"session.max_parked_per_ip", int64(d.Session.MaxParkedPerIP), broker.DefaultMaxParkedPerIP},
		{"block_timeout", int64(d.Limits.BlockTimeout), 0},
		{"presence.grace", int64(d.Presence.Grace), int64(broker.DefaultPresenceGrace)},
		{"presence.max_members", int64(d.Presence.MaxMembers), broker.DefaultMaxPresenceMembers},
		{"presence.max_sets", int64(d.Presence.MaxSets), broker.DefaultMaxPresenceSets},
		{"sync_interval", int64(d.Journal.SyncInterval), int64(persistence.DefaultSyncInterval)},
		{"segment_size", int64(d.Journal.SegmentSize), persistence.DefaultSegmentSize},
		{"journal.min_free", int64(d.Journal.MinFree), persistence.DefaultMinFree},
		{"write_timeout", int64(d.Conn.WriteTimeout), int64(server.DefaultWriteTimeout)},
		{"linger", int64(d.Conn.Linger), int64(server.DefaultLinger)},
		{"read_buffer_size", int64(d.Conn.ReadBufferSize), server.DefaultReadBufferSize},
		{"http.idle_timeout", int64(d.HTTP.IdleTimeout), int64(server.DefaultHTTPIdleTimeout)},
		{"http.read_timeout", int64(d.HTTP.ReadTimeout), int64(server.DefaultHTTPReadTimeout)},
		{"http.max_header_bytes", int64(d.HTTP.MaxHeaderBytes), server.DefaultHTTPMaxHeaderBytes},
		{"websocket.ping_interval", int64(d.WebSocket.PingInterval), int64(server.DefaultWebSocketPingInterval)},
		{"shutdown_reconnect_window", int64(d.ShutdownReconnectWindow), int64(server.DefaultShutdownReconnectWindow)},
		{"dedupe.window", int64(d.Dedupe.Window), int64(broker.DefaultDedupeWindow)},
		{"dedupe.max_keys_per_user", int64(d.Dedupe.MaxKeysPerUser), broker.DefaultDedupeMaxKeysPerUser},
	}
	for _, p := range pairs {
		if p.got != p.want {
			t.Errorf("%s: command default %d, library default %d", p.name, p.got, p.want)
		}
	}
	if !slices.Equal(d.HTTP.AllowedHosts, wsadapter.DefaultAllowedHosts()) {
		t.Errorf("http.allowed_hosts: command default %q, library default %q", d.HTTP.AllowedHosts, wsadapter.DefaultAllowedHosts())
	}
}

// TestEveryOptionDocumented fails when an option is missing from
// docs/configuration.md: its key, flag and variable must share a table row.
func TestEveryOptionDocumented(t *testing.T) {
	doc, err := os.ReadFile(filepath.Join("..", "..", "..", "..", "docs", "configuration.md"))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for line := range strings.SplitSeq(string(doc), "\n") {
		if strings.HasPrefix(line, "| `") {
			key, _, _ := strings.Cut(strings.TrimPrefix(line, "| `"), "`")
			rows[key] = line
		}
	}
	defaults := Default()
	for _, o := range Options() {
		row, ok := rows[o.Key]
		if !ok {
			t.Errorf("docs/configuration.md has no row for %s", o.Key)
			continue
		}
		for _, want := range []string{"`-" + o.Flag + "`", "`" + o.Env + "`", formatFlag(o.field(&defaults))} {
			if !strings.Contains(row, want) {
				t.Errorf("docs/configuration.md row of %s lacks %s:\n%s", o.Key, want, row)
			}
		}
	}
}

// TestDeployConfigLoads: the configuration shipped in deploy/ is valid as
// it stands, without anonymous access: it names a users file and rules.
// Load checks the options, not the files (the broker reads those at
// start; e2e TestDeployConfig starts it with real ones), so flags point
// them at temporary files here only to show that flags override them.
func TestDeployConfigLoads(t *testing.T) {
	path := filepath.Join("..", "..", "..", "..", "deploy", "config", "stompbox.yaml")
	l, err := Load([]string{"-config", path}, nil, os.ReadFile, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c := l.Config
	if c.Listen.Admin != ":61680" || c.Journal.Dir == "" || c.Log.Format != "json" {
		t.Errorf("deploy config: admin %q, journal %q, log format %q; want :61680, a journal, json",
			c.Listen.Admin, c.Journal.Dir, c.Log.Format)
	}
	if c.Auth.Anonymous || c.Auth.UsersFile != "/etc/stompbox/secrets/users" || c.Auth.ACLFile != "/etc/stompbox/acl.yaml" {
		t.Errorf("deploy config: anonymous %v, users file %q, ACL %q; want false, /etc/stompbox/secrets/users, /etc/stompbox/acl.yaml",
			c.Auth.Anonymous, c.Auth.UsersFile, c.Auth.ACLFile)
	}
	dir := t.TempDir()
	users, acl := filepath.Join(dir, "users"), filepath.Join(dir, "acl.yaml")
	l, err = Load([]string{"-config", path, "-auth-users-file", users, "-auth-acl-file", acl}, nil, os.ReadFile, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Auth.UsersFile != users || l.Config.Auth.ACLFile != acl || l.Config.Auth.Anonymous {
		t.Errorf("with flags: users file %q, ACL %q, anonymous %v; want the flags' and false",
			l.Config.Auth.UsersFile, l.Config.Auth.ACLFile, l.Config.Auth.Anonymous)
	}
}

// TestPrintConfigHidesSecrets: the admin tokens, set, are printed empty,
// and their value appears nowhere in the output.
func TestPrintConfigHidesSecrets(t *testing.T) {
	l, err := load(t, []string{"-admin-read-token", "read-token-0123456789"},
		[]string{"STOMPBOX_ADMIN_TOKEN=admin-token-0123456789"}, "")
	if err != nil {
		t.Fatal(err)
	}
	if l.Config.Admin.Token != "admin-token-0123456789" || l.Config.Admin.ReadToken != "read-token-0123456789" {
		t.Fatalf("tokens not loaded: %+v", l.Config.Admin)
	}
	var out bytes.Buffer
	if err := l.Print(&out); err != nil {
		t.Fatal(err)
	}
	printed := out.String()
	if strings.Contains(printed, "0123456789") {
		t.Errorf("a token was printed:\n%s", printed)
	}
	for _, line := range []string{`  token: ""`, `# env STOMPBOX_ADMIN_TOKEN (a secret: set, not printed)`, `  read_token: ""`, `# flag -admin-read-token (a secret: set, not printed)`} {
		if !strings.Contains(printed, line) {
			t.Errorf("-print-config output lacks %q", line)
		}
	}
}
