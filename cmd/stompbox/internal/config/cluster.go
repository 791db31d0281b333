package config

import (
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/stompbox/stompbox/server/cluster"
)

// Cluster configures cluster mode (docs/cluster.md): several stompbox
// nodes share one set of destinations through NATS JetStream. It is off,
// and stompbox the single-node broker, unless cluster.nats_url or
// cluster.embedded_nats is set.
type Cluster struct {
	// NATSURL is one URL or several separated by commas: a string, not a
	// list, so the file, the flag and the variable read the same.
	NATSURL        string       `yaml:"nats_url" flag:"cluster-nats" help:"NATS servers to share destinations with the other stompbox nodes through JetStream: nats://, tls://, ws:// or wss:// URLs, comma-separated (e.g. nats://n1:4222,nats://n2:4222); empty and no cluster.embedded_nats: a single node, no cluster"`
	Name           string       `yaml:"name" flag:"cluster-name" help:"the stompbox cluster's name, prefixing every NATS subject, stream and consumer, so several clusters can share one NATS; letters, digits, _ and -"`
	Node           string       `yaml:"node" flag:"cluster-node" help:"this node's name to NATS and in logs and metrics, unique within the cluster; empty: the host name (a StatefulSet pod's name)"`
	NATSCredsFile  string       `yaml:"nats_creds_file" flag:"cluster-nats-creds-file" help:"NATS credentials file (user JWT and NKey seed) for cluster.nats_url"`
	NATSTLSCA      string       `yaml:"nats_tls_ca" flag:"cluster-nats-tls-ca" help:"PEM CA bundle that NATS servers' certificates are verified against; empty: the system roots"`
	NATSTLSCert    string       `yaml:"nats_tls_cert" flag:"cluster-nats-tls-cert" help:"PEM client certificate presented to NATS (with cluster.nats_tls_key)"`
	NATSTLSKey     string       `yaml:"nats_tls_key" flag:"cluster-nats-tls-key" help:"PEM private key of cluster.nats_tls_cert"`
	Replicas       int          `yaml:"replicas" flag:"cluster-replicas" help:"replicas of the JetStream streams stompbox creates, 1 to 5; 0: 3 when the JetStream cluster has at least 3 servers, else 1"`
	AckWait        Duration     `yaml:"ack_wait" flag:"cluster-ack-wait" help:"how long JetStream waits for a queue message handed to a node to be settled before redelivering it elsewhere: how soon a dead node's unacknowledged messages come back (a live node keeps extending it)"`
	PublishTimeout Duration     `yaml:"publish_timeout" flag:"cluster-publish-timeout" help:"longest wait for JetStream to confirm a stored (persistent) message; past it the SEND is refused, retryable"`
	PresenceTTL    Duration     `yaml:"presence_ttl" flag:"cluster-presence-ttl" help:"how long a member another node announced stays without a refresh: how soon a dead node's presence members leave (the same on every node)"`
	EmbeddedNATS   EmbeddedNATS `yaml:"embedded_nats"`
}

// EmbeddedNATS runs a nats-server with JetStream inside stompbox, for
// small deployments and trials; an external NATS cluster is the
// production setup. It is on when any of its keys is set, and then needs
// store_dir.
type EmbeddedNATS struct {
	Listen        string   `yaml:"listen" flag:"cluster-embedded-nats-listen" help:"client address of the embedded nats-server (port 0 or -1: any free port); empty: 127.0.0.1:4222"`
	ClusterListen string   `yaml:"cluster_listen" flag:"cluster-embedded-nats-cluster-listen" help:"route address the embedded nats-server's peers connect to (needs cluster.embedded_nats.routes); empty: no routes, a one-server NATS"`
	Routes        []string `yaml:"routes" flag:"cluster-embedded-nats-routes" help:"the peers' route URLs, nats-route://host:port (flag and env: comma-separated); needs cluster.embedded_nats.cluster_listen"`
	StoreDir      string   `yaml:"store_dir" flag:"cluster-embedded-nats-store-dir" help:"JetStream storage directory of the embedded nats-server; setting it (or any cluster.embedded_nats key) runs one inside stompbox"`
}

// enabled reports whether an embedded nats-server is asked for.
func (e *EmbeddedNATS) enabled() bool {
	return e.Listen != "" || e.ClusterListen != "" || len(e.Routes) > 0 || e.StoreDir != ""
}

// MaxClusterReplicas is the largest cluster.replicas: JetStream's own limit.
const MaxClusterReplicas = 5

// natsToken is what cluster.name may be: one NATS subject token, also a
// valid stream and consumer name part.
var natsToken = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

// natsURLSchemes are the schemes nats.go connects with.
var natsURLSchemes = []string{"nats", "tls", "ws", "wss"}

// ClusterURLs splits cluster.nats_url into its URLs, spaces trimmed and
// empty items dropped.
func (c *Cluster) ClusterURLs() []string {
	var urls []string
	for u := range strings.SplitSeq(c.NATSURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

// Enabled reports whether cluster mode is on: cluster.nats_url or
// cluster.embedded_nats is set.
func (c *Cluster) Enabled() bool {
	return len(c.ClusterURLs()) > 0 || c.EmbeddedNATS.enabled()
}

// ClusterConfig is the server/cluster configuration of a validated
// Config, and true; nil and false when cluster mode is off. The queue
// bounds come from limits.max_queue_messages and limits.max_queue_bytes.
// Logger and Registerer are left for the caller; fields left zero
// (cluster.node empty, cluster.replicas 0, the embedded listen address)
// take the cluster package's defaults.
func (c *Config) ClusterConfig() (*cluster.Config, bool) {
	cl := &c.Cluster
	if !cl.Enabled() {
		return nil, false
	}
	cc := &cluster.Config{
		URLs:           cl.ClusterURLs(),
		Name:           cl.Name,
		NodeName:       cl.Node,
		CredsFile:      cl.NATSCredsFile,
		TLSCA:          cl.NATSTLSCA,
		TLSCert:        cl.NATSTLSCert,
		TLSKey:         cl.NATSTLSKey,
		Replicas:       cl.Replicas,
		AckWait:        time.Duration(cl.AckWait),
		PublishTimeout: time.Duration(cl.PublishTimeout),
		PresenceTTL:    time.Duration(cl.PresenceTTL),
		// A queue holds as much in the cluster as on one node.
		MaxQueueMessages: c.Limits.MaxQueueMessages,
		MaxQueueBytes:    int64(c.Limits.MaxQueueBytes),
		// Idempotency keys are remembered as long in the cluster as on one node.
		DedupeWindow: time.Duration(c.Dedupe.Window),
		// A history stream holds at most what one node's histories retain.
		MaxHistoryBytes: int64(c.Topics.HistoryMaxBytes),
	}
	if e := &cl.EmbeddedNATS; e.enabled() {
		cc.Embedded = &cluster.EmbeddedConfig{
			Listen:        e.Listen,
			ClusterListen: e.ClusterListen,
			Routes:        slices.Clone(e.Routes),
			StoreDir:      e.StoreDir,
		}
	}
	return cc, true
}

// validateCluster checks the cluster section; check is validate's helper.
func (l *Loaded) validateCluster(check func(key string, ok bool, format string, args ...any)) {
	cl := &l.Config.Cluster
	for _, u := range cl.ClusterURLs() {
		err := validNATSURL(u, natsURLSchemes)
		check("cluster.nats_url", err == nil, "%v", err)
	}
	check("cluster.nats_url", strings.TrimSpace(cl.NATSURL) == "" || len(cl.ClusterURLs()) > 0, "%q holds no URL", cl.NATSURL)
	check("cluster.name", natsToken.MatchString(cl.Name), "%q is not a NATS name token (letters, digits, _ and -, at least one)", cl.Name)
	check("cluster.node", cl.Node == "" || validNodeName(cl.Node), "%q is not a node name (printable, no spaces, no * or >, at most 128 bytes)", cl.Node)
	check("cluster.replicas", cl.Replicas >= 0 && cl.Replicas <= MaxClusterReplicas,
		"must be between 0 (auto: 3 with at least 3 JetStream servers, else 1) and %d (got %d)", MaxClusterReplicas, cl.Replicas)
	check("cluster.ack_wait", cl.AckWait > 0, "must be positive (got %s)", cl.AckWait)
	check("cluster.publish_timeout", cl.PublishTimeout > 0, "must be positive (got %s)", cl.PublishTimeout)
	check("cluster.presence_ttl", cl.PresenceTTL >= Duration(time.Second), "must be at least 1s (got %s)", cl.PresenceTTL)
	check("cluster.nats_tls_key", cl.NATSTLSCert == "" || cl.NATSTLSKey != "", "required by cluster.nats_tls_cert: the certificate and its key go together")
	check("cluster.nats_tls_cert", cl.NATSTLSKey == "" || cl.NATSTLSCert != "", "required by cluster.nats_tls_key: the certificate and its key go together")
	external := len(cl.ClusterURLs()) > 0
	for key, v := range map[string]string{"cluster.nats_creds_file": cl.NATSCredsFile, "cluster.nats_tls_ca": cl.NATSTLSCA,
		"cluster.nats_tls_cert": cl.NATSTLSCert, "cluster.nats_tls_key": cl.NATSTLSKey} {
		check(key, v == "" || external, "needs cluster.nats_url: it configures the connection to those servers")
	}

	e := &cl.EmbeddedNATS
	for key, addr := range map[string]string{"cluster.embedded_nats.listen": e.Listen, "cluster.embedded_nats.cluster_listen": e.ClusterListen} {
		if addr == "" {
			continue
		}
		_, p, err := net.SplitHostPort(addr)
		port, perr := strconv.Atoi(p)
		check(key, err == nil && perr == nil && port >= -1 && port <= 65535,
			"invalid address %q (want host:port or :port, port 0 to 65535; 0 or -1: any free port)", addr)
	}
	for _, r := range e.Routes {
		err := validNATSURL(r, []string{"nats-route", "nats"})
		check("cluster.embedded_nats.routes", err == nil, "%v", err)
	}
	check("cluster.embedded_nats.routes", len(e.Routes) == 0 || e.ClusterListen != "", "needs cluster.embedded_nats.cluster_listen: peers route to it")
	// nats-server refuses JetStream in a cluster whose peers it is not told.
	check("cluster.embedded_nats.cluster_listen", e.ClusterListen == "" || len(e.Routes) > 0,
		"needs cluster.embedded_nats.routes: JetStream in a NATS cluster starts only with its peers named (listing this node's own route too is fine)")
	check("cluster.embedded_nats.store_dir", !e.enabled() || e.StoreDir != "",
		"required by cluster.embedded_nats: JetStream must know where to store the streams")
}

// validNATSURL checks that u parses as a URL with one of schemes and a host.
func validNATSURL(u string, schemes []string) error {
	p, err := url.Parse(u)
	switch {
	case err != nil:
		return fmt.Errorf("%q is not a URL: %w", u, err)
	case !slices.Contains(schemes, p.Scheme):
		return fmt.Errorf("%q: scheme %q is not one of %s (e.g. %s://host:port)", u, p.Scheme, strings.Join(schemes, ", "), schemes[0])
	case p.Hostname() == "":
		return fmt.Errorf("%q names no host (e.g. %s://host:port)", u, schemes[0])
	}
	return nil
}

// validNodeName: a node name ends up in NATS client names, consumer
// metadata and metric labels, so it must be one printable word without
// NATS wildcards.
func validNodeName(s string) bool {
	return len(s) <= 128 && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r == 0x7f || r == '*' || r == '>'
	})
}
