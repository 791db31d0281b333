//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The deploy/ checks. Here: the production config file, the Prometheus
// files (promtool) and the Grafana dashboard, plus the helpers. The
// dashboard's and alerts' metrics against a real broker's /metrics:
// deploy_metrics_test.go. Kubernetes, Docker, compose and systemd:
// deploy_manifests_test.go.

var (
	metricName = regexp.MustCompile(`(?:^|[^a-zA-Z0-9_:])((?:stompbox|go|process)_[a-zA-Z0-9_]+)`)
)

// deployFile reads a file by its path from the module root.
func deployFile(t *testing.T, rel string) []byte {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// yamlDocs decodes every document of a YAML file.
func yamlDocs(t *testing.T, rel string) []map[string]any {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(deployFile(t, rel)))
	var docs []map[string]any
	for {
		var d map[string]any
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		docs = append(docs, d)
	}
}

// dig walks maps by key and lists by index ("0"); nil when absent.
func dig(v any, path ...string) any {
	for _, p := range path {
		switch c := v.(type) {
		case map[string]any:
			v = c[p]
		case []any:
			var i int
			if _, err := fmt.Sscan(p, &i); err != nil || i < 0 || i >= len(c) {
				return nil
			}
			v = c[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// prodConfig is deploy/config/stompbox.yaml decoded.
func prodConfig(t *testing.T) map[string]any {
	t.Helper()
	return yamlDocs(t, "deploy/config/stompbox.yaml")[0]
}

func shutdownTimeout(t *testing.T) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(str(prodConfig(t)["shutdown_timeout"]))
	if err != nil || d <= 0 {
		t.Fatalf("shutdown_timeout in deploy/config/stompbox.yaml: %v %v", d, err)
	}
	return d
}

func promtool(t *testing.T, args ...string) {
	t.Helper()
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: install Debian's prometheus package (make e2e-deps does)")
	}
	root, _ := moduleRoot()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func TestDeployPrometheus(t *testing.T) {
	t.Run("CheckConfig", func(t *testing.T) { promtool(t, "check", "config", "deploy/prometheus/prometheus.yml") })
	t.Run("CheckRules", func(t *testing.T) { promtool(t, "check", "rules", "deploy/prometheus/alerts.yml") })
	t.Run("TestRules", func(t *testing.T) { promtool(t, "test", "rules", "deploy/prometheus/alerts_test.yml") })
	t.Run("EveryAlertHasAFiringTest", func(t *testing.T) {
		tested := map[string]bool{}
		for _, tc := range dig(yamlDocs(t, "deploy/prometheus/alerts_test.yml")[0], "tests").([]any) {
			for _, a := range dig(tc, "alert_rule_test").([]any) {
				if exp, _ := dig(a, "exp_alerts").([]any); len(exp) > 0 {
					tested[str(dig(a, "alertname"))] = true
				}
			}
		}
		names := alertNames(t)
		for _, want := range []string{"StompboxDown", "StompboxSlowConsumers", "StompboxHeartbeatTimeouts",
			"StompboxJournalFsyncSlow", "StompboxQueueBacklog", "StompboxDeadLetters", "StompboxJournalNearBudget",
			"StompboxErrorRate", "StompboxTLSCertificateExpiring", "StompboxJournalFailed", "StompboxProducersBlocked"} {
			if !names[want] {
				t.Errorf("alerts.yml has no alert %s", want)
			}
		}
		for name := range names {
			if !tested[name] {
				t.Errorf("alerts_test.yml never expects %s to fire", name)
			}
		}
	})
	t.Run("ScrapesTheComposeBroker", func(t *testing.T) {
		prom := yamlDocs(t, "deploy/prometheus/prometheus.yml")[0]
		if !slices.Contains(dig(prom, "rule_files").([]any), any("alerts.yml")) {
			t.Errorf("rule_files %v lacks alerts.yml", dig(prom, "rule_files"))
		}
		want := "stompbox:" + port(str(dig(prodConfig(t), "listen", "admin")))
		var targets []any
		for _, sc := range dig(prom, "scrape_configs").([]any) {
			for _, s := range dig(sc, "static_configs").([]any) {
				targets = append(targets, dig(s, "targets").([]any)...)
			}
		}
		if !slices.Contains(targets, any(want)) {
			t.Errorf("scrape targets %v lack %s (the compose service and listen.admin)", targets, want)
		}
	})
}

func alertNames(t *testing.T) map[string]bool {
	names := map[string]bool{}
	for _, g := range dig(yamlDocs(t, "deploy/prometheus/alerts.yml")[0], "groups").([]any) {
		for _, r := range dig(g, "rules").([]any) {
			names[str(dig(r, "alert"))] = true
		}
	}
	return names
}

// port is the port of a host:port listen address.
func port(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }

// queries returns every PromQL expression of the dashboard (queries and
// template variables) and of the alerts, each with where it is used
// ("dashboard", "alert <name>").
func queries(t *testing.T) map[string][]string {
	t.Helper()
	exprs := map[string][]string{}
	add := func(where, expr string) {
		if !slices.Contains(exprs[expr], where) {
			exprs[expr] = append(exprs[expr], where)
		}
	}
	var dash map[string]any
	if err := json.Unmarshal(deployFile(t, "deploy/grafana/dashboards/stompbox.json"), &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch c := v.(type) {
		case map[string]any:
			for k, e := range c {
				if s, ok := e.(string); ok && (k == "expr" || k == "query" || k == "definition") {
					add("dashboard", s)
				}
				walk(e)
			}
		case []any:
			for _, e := range c {
				walk(e)
			}
		}
	}
	walk(dash)
	for _, g := range dig(yamlDocs(t, "deploy/prometheus/alerts.yml")[0], "groups").([]any) {
		for _, r := range dig(g, "rules").([]any) {
			add("alert "+str(dig(r, "alert")), str(dig(r, "expr")))
		}
	}
	return exprs
}

// queriedMetrics maps each metric name the queries use to where.
func queriedMetrics(t *testing.T) map[string][]string {
	t.Helper()
	used := map[string][]string{}
	for expr, where := range queries(t) {
		for _, m := range metricName.FindAllStringSubmatch(expr, -1) {
			for _, w := range where {
				if !slices.Contains(used[m[1]], w) {
					used[m[1]] = append(used[m[1]], w)
				}
			}
		}
	}
	return used
}

func TestDeployDashboard(t *testing.T) {
	var dash struct {
		UID        string
		Panels     []map[string]any
		Templating struct{ List []map[string]any }
	}
	if err := json.Unmarshal(deployFile(t, "deploy/grafana/dashboards/stompbox.json"), &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	t.Run("Panels", func(t *testing.T) {
		ids := map[float64]bool{}
		for _, p := range dash.Panels {
			id, _ := p["id"].(float64)
			if ids[id] || p["gridPos"] == nil || str(p["title"]) == "" {
				t.Errorf("panel %v: duplicate id, no gridPos or no title", p["title"])
			}
			ids[id] = true
			if p["type"] != "row" && len(p["targets"].([]any)) == 0 {
				t.Errorf("panel %v has no queries", p["title"])
			}
		}
		if dash.UID == "" || len(dash.Panels) < 15 {
			t.Errorf("uid %q, %d panels", dash.UID, len(dash.Panels))
		}
	})
	t.Run("DatasourceVariable", func(t *testing.T) {
		found := false
		for _, v := range dash.Templating.List {
			found = found || (v["name"] == "datasource" && v["query"] == "prometheus")
		}
		if !found {
			t.Error("no prometheus datasource variable")
		}
		ds := yamlDocs(t, "deploy/grafana/provisioning/datasources/prometheus.yaml")[0]
		if u := str(dig(ds, "datasources", "0", "url")); u != "http://prometheus:9090" {
			t.Errorf("datasource url %q, want the compose service http://prometheus:9090", u)
		}
	})
	t.Run("CoversTheOperationsMetrics", func(t *testing.T) {
		used := queriedMetrics(t)
		for _, m := range []string{"stompbox_connections", "stompbox_connects_total", "stompbox_disconnects_total",
			"stompbox_frames_received_total", "stompbox_frames_sent_total", "stompbox_messages_published_total",
			"stompbox_messages_delivered_total", "stompbox_messages_acked_total", "stompbox_messages_nacked_total",
			"stompbox_messages_redelivered_total", "stompbox_messages_dead_lettered_total", "stompbox_queue_messages",
			"stompbox_queue_consumers", "stompbox_journal_append_duration_seconds_bucket",
			"stompbox_journal_fsync_duration_seconds_bucket", "stompbox_journal_bytes", "stompbox_journal_max_bytes",
			"stompbox_errors_total", "stompbox_heartbeat_timeouts_total", "stompbox_slow_consumers_total",
			"stompbox_websocket_closes_total", "stompbox_bytes_received_total", "stompbox_bytes_sent_total"} {
			if !slices.Contains(used[m], "dashboard") {
				t.Errorf("the dashboard does not query %s", m)
			}
		}
	})
}

// configKeys are the keys deploy/config/stompbox.yaml may use: the core of
// the loader's schema (docs/configuration.md lists all). The loader
// rejects unknown keys at start; BrokerStartsWithIt is the final word.
var configKeys = map[string][]string{
	"": {"listen", "tls", "websocket", "auth", "heartbeat", "limits", "journal", "topics", "session", "log", "admin",
		"shutdown_timeout"},
	"auth": {"anonymous", "users_file", "acl_file", "failure_delay", "jwt_secret_file", "jwt_keys_file", "jwt_audience",
		"jwt_issuer", "token_query_param", "token_cookie", "token_required"},
	"listen":    {"stomp", "stomp_tls", "http", "https", "admin"},
	"tls":       {"cert_file", "key_file"},
	"websocket": {"path", "allowed_origins"},
	"heartbeat": {"interval", "tolerance"},
	"limits": {"connect_timeout", "max_body", "max_headers", "max_subscriptions", "max_outbox_bytes",
		"max_queue_messages", "max_queue_bytes", "max_redeliveries"},
	"journal": {"dir", "sync", "sync_interval", "max_bytes"},
	"topics":  {"history"},
	"session": {"resume_grace"},
	"log":     {"level", "format"},
	"admin":   {"pprof", "destination_metrics"},
}

func TestDeployConfig(t *testing.T) {
	cfg := prodConfig(t)
	t.Run("KnownKeysOnly", func(t *testing.T) {
		for k, v := range cfg {
			if !slices.Contains(configKeys[""], k) {
				t.Errorf("unknown key %s", k)
			}
			sub, _ := v.(map[string]any)
			for sk := range sub {
				if !slices.Contains(configKeys[k], sk) {
					t.Errorf("unknown key %s.%s", k, sk)
				}
			}
		}
	})
	t.Run("ContainerSettings", func(t *testing.T) {
		for path, want := range map[string]string{"listen.admin": ":61680", "journal.dir": "/var/lib/stompbox/journal", "log.format": "json",
			"auth.users_file": "/etc/stompbox/secrets/users", "auth.acl_file": "/etc/stompbox/acl.yaml"} {
			if got := str(dig(cfg, strings.Split(path, ".")...)); got != want {
				t.Errorf("%s = %q, want %q", path, got, want)
			}
		}
	})
	t.Run("NotAnonymous", func(t *testing.T) {
		// Production requires a login: a users file, rules beside it, and
		// no anonymous access (deploy/config/acl.yaml is the rules file).
		if a := dig(cfg, "auth", "anonymous"); a != nil && a != false {
			t.Errorf("auth.anonymous = %v, want false or absent", a)
		}
		if acl := str(dig(cfg, "auth", "acl_file")); filepath.Base(acl) != "acl.yaml" {
			t.Errorf("auth.acl_file %q is not the shipped acl.yaml", acl)
		}
	})
	t.Run("BrokerStartsWithIt", func(t *testing.T) {
		// The same file with loopback ephemeral listeners, a temporary
		// journal and text logs (startBroker reads the listening line), a
		// users file made by `stompbox passwd` and the shipped acl.yaml.
		for _, k := range []string{"stomp", "http", "admin"} {
			cfg["listen"].(map[string]any)[k] = "127.0.0.1:0"
		}
		dir := t.TempDir()
		cfg["journal"].(map[string]any)["dir"] = filepath.Join(dir, "journal")
		cfg["log"].(map[string]any)["format"] = "text"
		users := filepath.Join(dir, "users")
		const chatPW = "deploy-chat-e2e-password"
		writeUsers(t, users, "chatter", "chat", chatPW)
		cfg["auth"].(map[string]any)["users_file"] = users
		cfg["auth"].(map[string]any)["acl_file"] = filepath.Join(mustRoot(t), "deploy", "config", "acl.yaml")
		out, err := yaml.Marshal(cfg)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, "stompbox.yaml")
		if err := os.WriteFile(path, out, 0o600); err != nil {
			t.Fatal(err)
		}
		// startBroker passes -auth-anonymous; the file alone decides here.
		b := startBroker(t, "-auth-anonymous=false", "-config", path)
		if strings.Contains(b.log.String(), "ANONYMOUS ACCESS ENABLED") {
			t.Error("the production configuration enables anonymous access")
		}
		c := dialAuth(t, b, overTCP)
		c.send(connectFrame())
		c.expectError("auth-failed")
		// The chat role of acl.yaml: the chat rooms, nothing else.
		c = authSession(t, b, overTCP, "login:chatter", "passcode:"+chatPW)
		c.do(subscribeFrame("1", "/topic/chat.lobby"), "sub-1")
		c = authSession(t, b, overTCP, "login:chatter", "passcode:"+chatPW)
		c.send(sendFrame("/queue/orders", "x", "r"))
		c.expectError("forbidden")
		requireNoSecrets(t, b, chatPW)
		b.stop()
	})
}
