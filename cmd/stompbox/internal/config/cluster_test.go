package config

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/server/cluster"
)

// TestClusterOffByDefault: with no cluster key set stompbox stays a single
// node, and the defaults are the documented ones.
func TestClusterOffByDefault(t *testing.T) {
	l, err := load(t, nil, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if cc, ok := l.Config.ClusterConfig(); ok || cc != nil {
		t.Fatalf("ClusterConfig() = %+v, %v; want nil, false without cluster.nats_url or embedded_nats", cc, ok)
	}
	c := l.Config.Cluster
	if c.Name != "stompbox" || c.Node != "" || c.Replicas != 0 ||
		c.AckWait != Duration(30*time.Second) || c.PublishTimeout != Duration(5*time.Second) {
		t.Errorf("defaults: %+v", c)
	}
}

// TestClusterConfigFromFile: every key from the file, one overridden by
// the environment variable the issue names, and the flag over both.
func TestClusterConfigFromFile(t *testing.T) {
	file := `
cluster:
  nats_url: "nats://file:4222"
  name: chat-prod
  node: stompbox-1
  nats_creds_file: /etc/stompbox/nats.creds
  nats_tls_ca: /etc/stompbox/ca.pem
  nats_tls_cert: /etc/stompbox/client.pem
  nats_tls_key: /etc/stompbox/client-key.pem
  replicas: 3
  ack_wait: 45s
  publish_timeout: 2s
  embedded_nats:
    listen: "127.0.0.1:4333"
    cluster_listen: "0.0.0.0:6333"
    routes: ["nats-route://b:6333", "nats-route://c:6333"]
    store_dir: /var/lib/stompbox/nats
`
	env := []string{"STOMPBOX_CLUSTER_NATS=nats://env-a:4222, tls://env-b:4222 ,", "STOMPBOX_CLUSTER_REPLICAS=5"}
	l, err := load(t, []string{"-config", "stompbox.yaml", "-cluster-replicas", "1", "-max-queue-messages", "500"}, env, file)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := l.Config.ClusterConfig()
	if !ok {
		t.Fatal("ClusterConfig() reports cluster mode off")
	}
	want := &cluster.Config{
		URLs:           []string{"nats://env-a:4222", "tls://env-b:4222"},
		Name:           "chat-prod",
		NodeName:       "stompbox-1",
		CredsFile:      "/etc/stompbox/nats.creds",
		TLSCA:          "/etc/stompbox/ca.pem",
		TLSCert:        "/etc/stompbox/client.pem",
		TLSKey:         "/etc/stompbox/client-key.pem",
		Replicas:       1,
		AckWait:        45 * time.Second,
		PublishTimeout: 2 * time.Second,
		// limits.max_queue_messages from the flag, max_queue_bytes the default.
		MaxQueueMessages: 500,
		MaxQueueBytes:    256 << 20,
		DedupeWindow:     2 * time.Minute, // dedupe.window's default
		PresenceTTL:      30 * time.Second,
		MaxHistoryBytes:  256 << 20, // topics.history_max_bytes's default
		Embedded: &cluster.EmbeddedConfig{
			Listen:        "127.0.0.1:4333",
			ClusterListen: "0.0.0.0:6333",
			Routes:        []string{"nats-route://b:6333", "nats-route://c:6333"},
			StoreDir:      "/var/lib/stompbox/nats",
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ClusterConfig()\n got %+v %+v\nwant %+v %+v", got, got.Embedded, want, want.Embedded)
	}
	for key, src := range map[string]string{"cluster.nats_url": "env STOMPBOX_CLUSTER_NATS",
		"cluster.replicas": "flag -cluster-replicas", "cluster.name": "stompbox.yaml:4"} {
		if s := l.SourceOf(key).String(); s != src {
			t.Errorf("%s from %s, want %s", key, s, src)
		}
	}
	// The result is a copy: changing it leaves the loaded config alone.
	got.Embedded.Routes[0] = "changed"
	if l.Config.Cluster.EmbeddedNATS.Routes[0] != "nats-route://b:6333" {
		t.Error("ClusterConfig shares the routes slice with the Config")
	}
}

// TestClusterConfigModes: the flag alone, the embedded server alone.
func TestClusterConfigModes(t *testing.T) {
	l, err := load(t, []string{"-cluster-nats", "nats://127.0.0.1:4222,nats://127.0.0.1:4223"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	cc, ok := l.Config.ClusterConfig()
	if !ok || !reflect.DeepEqual(cc.URLs, []string{"nats://127.0.0.1:4222", "nats://127.0.0.1:4223"}) || cc.Embedded != nil ||
		cc.Name != "stompbox" || cc.NodeName != "" || cc.AckWait != 30*time.Second || cc.PublishTimeout != 5*time.Second {
		t.Errorf("-cluster-nats: %+v, %v", cc, ok)
	}

	l, err = load(t, nil, []string{"STOMPBOX_CLUSTER_EMBEDDED_NATS_STORE_DIR=/tmp/js", "STOMPBOX_CLUSTER_NODE=n1"}, "")
	if err != nil {
		t.Fatal(err)
	}
	cc, ok = l.Config.ClusterConfig()
	if !ok || cc.URLs != nil || cc.NodeName != "n1" ||
		!reflect.DeepEqual(cc.Embedded, &cluster.EmbeddedConfig{StoreDir: "/tmp/js"}) {
		t.Errorf("embedded only: %+v, %v", cc, ok)
	}
}

// TestClusterPrintRoundTrip: -print-config writes the nested
// cluster.embedded_nats section so that it loads back.
func TestClusterPrintRoundTrip(t *testing.T) {
	l, err := load(t, []string{"-cluster-embedded-nats-routes", "nats-route://b:6222,nats-route://c:6222",
		"-cluster-embedded-nats-cluster-listen", ":6222", "-cluster-embedded-nats-store-dir", "/data/js", "-cluster-node", "a"}, nil, "")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := l.Print(&out); err != nil {
		t.Fatal(err)
	}
	want := "cluster:\n  nats_url: \"\""
	if !strings.Contains(out.String(), want) || !strings.Contains(out.String(), "\n  embedded_nats:\n    listen: \"\"") ||
		!strings.Contains(out.String(), `    routes: ["nats-route://b:6222", "nats-route://c:6222"]`) {
		t.Errorf("printed:\n%s", out.String())
	}
	again, err := load(t, []string{"-config", "stompbox.yaml"}, nil, out.String())
	if err != nil {
		t.Fatalf("printed config does not load: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(again.Config.Cluster, l.Config.Cluster) {
		t.Errorf("round trip: %+v, want %+v", again.Config.Cluster, l.Config.Cluster)
	}
}

// TestClusterRejections: each bad cluster value is refused with its key,
// its source and why.
func TestClusterRejections(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  []string
		file string
		want []string
	}{
		{"bad scheme", []string{"-cluster-nats", "nats://a:4222,http://b:4222"}, nil, "",
			[]string{`flag -cluster-nats: cluster.nats_url: "http://b:4222": scheme "http" is not one of nats, tls, ws, wss`}},
		{"no scheme", nil, []string{"STOMPBOX_CLUSTER_NATS=nats-1:4222"}, "",
			[]string{`env STOMPBOX_CLUSTER_NATS: cluster.nats_url: "nats-1:4222": scheme "nats-1" is not one of`}},
		{"no host", []string{"-cluster-nats", "nats://:4222"}, nil, "", []string{`cluster.nats_url: "nats://:4222" names no host`}},
		{"unparsable", []string{"-cluster-nats", "nats://a b:42%"}, nil, "", []string{`cluster.nats_url: "nats://a b:42%" is not a URL`}},
		{"only commas", []string{"-cluster-nats", " , "}, nil, "", []string{`cluster.nats_url: " , " holds no URL`}},
		{"bad name", nil, nil, "cluster:\n  name: chat.prod\n", []string{`stompbox.yaml:2: cluster.name: "chat.prod" is not a NATS name token`}},
		{"empty name", []string{"-cluster-name", ""}, nil, "", []string{`flag -cluster-name: cluster.name: "" is not a NATS name token`}},
		{"bad node", []string{"-cluster-node", "node *"}, nil, "", []string{`flag -cluster-node: cluster.node: "node *" is not a node name`}},
		{"replicas above 5", []string{"-cluster-replicas", "7"}, nil, "", []string{"flag -cluster-replicas: cluster.replicas: must be between 0 (auto"}},
		{"negative replicas", nil, nil, "cluster:\n  replicas: -1\n", []string{"stompbox.yaml:2: cluster.replicas: must be between 0"}},
		{"zero ack wait", []string{"-cluster-ack-wait", "0s"}, nil, "", []string{"flag -cluster-ack-wait: cluster.ack_wait: must be positive (got 0s)"}},
		{"negative publish timeout", []string{"-cluster-publish-timeout", "-1s"}, nil, "", []string{"cluster.publish_timeout: must be positive (got -1s)"}},
		{"cert without key", []string{"-cluster-nats", "tls://a:4222", "-cluster-nats-tls-cert", "c.pem"}, nil, "",
			[]string{"default: cluster.nats_tls_key: required by cluster.nats_tls_cert"}},
		{"key without cert", []string{"-cluster-nats", "tls://a:4222", "-cluster-nats-tls-key", "k.pem"}, nil, "",
			[]string{"default: cluster.nats_tls_cert: required by cluster.nats_tls_key"}},
		{"creds without URL", []string{"-cluster-nats-creds-file", "x.creds"}, nil, "",
			[]string{"flag -cluster-nats-creds-file: cluster.nats_creds_file: needs cluster.nats_url"}},
		{"embedded without store", []string{"-cluster-embedded-nats-listen", "127.0.0.1:4222"}, nil, "",
			[]string{"default: cluster.embedded_nats.store_dir: required by cluster.embedded_nats"}},
		{"embedded bad listen", []string{"-cluster-embedded-nats-listen", "4222", "-cluster-embedded-nats-store-dir", "/d"}, nil, "",
			[]string{`flag -cluster-embedded-nats-listen: cluster.embedded_nats.listen: invalid address "4222"`}},
		{"embedded named port", []string{"-cluster-embedded-nats-listen", "127.0.0.1:nats", "-cluster-embedded-nats-store-dir", "/d"}, nil, "",
			[]string{`cluster.embedded_nats.listen: invalid address "127.0.0.1:nats"`}},
		{"cluster listen without routes", []string{"-cluster-embedded-nats-cluster-listen", ":6222", "-cluster-embedded-nats-store-dir", "/d"}, nil, "",
			[]string{"flag -cluster-embedded-nats-cluster-listen: cluster.embedded_nats.cluster_listen: needs cluster.embedded_nats.routes"}},
		{"routes without cluster listen", nil, nil, "cluster:\n  embedded_nats:\n    routes: [\"nats-route://b:6222\"]\n    store_dir: /d\n",
			[]string{"stompbox.yaml:3: cluster.embedded_nats.routes: needs cluster.embedded_nats.cluster_listen"}},
		{"bad route", []string{"-cluster-embedded-nats-routes", "http://b:6222", "-cluster-embedded-nats-cluster-listen", ":6222",
			"-cluster-embedded-nats-store-dir", "/d"}, nil, "",
			[]string{`cluster.embedded_nats.routes: "http://b:6222": scheme "http" is not one of nats-route, nats`}},
		{"unknown key", nil, nil, "cluster:\n  embedded_nats:\n    store: /d\n",
			[]string{"stompbox.yaml:3: cluster.embedded_nats.store: unknown key (valid here: listen, cluster_listen, routes, store_dir)"}},
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
