package server

import (
	"runtime"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/wsadapter"
)

// transport is how a connection reached the server; also a metric label.
type transport uint8

const (
	transportTCP transport = iota // native STOMP
	transportTLS                  // native STOMP over TLS
	transportWS                   // STOMP over WebSocket
	transportWSS                  // STOMP over WebSocket over TLS
	transportCount
)

var transportNames = [transportCount]string{"tcp", "tls", "ws", "wss"}

func (t transport) String() string { return transportNames[t] }

// transportCounters are one transport's counters, padded to their own
// cache lines: every read and write of that transport adds to them.
type transportCounters struct {
	open     atomic.Int64
	accepted atomic.Uint64
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	_        [128 - 32]byte
}

// wsCloseCodes are the close codes counted by name; any other code a peer
// sends is counted as "other", so the label set stays fixed.
var wsCloseCodes = [...]wsadapter.CloseCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012}

// metrics are the server's counters, read at scrape time.
type metrics struct {
	transports     [transportCount]transportCounters
	wsCloses       [2][len(wsCloseCodes) + 1]atomic.Uint64 // [byPeer][code index]
	heartbeatsSent atomic.Uint64
	refused        [limitCount]atomic.Uint64          // by the admission limit that refused
	upgradeRefused [upgradeRefusalCount]atomic.Uint64 // by upgradeRefusal

	pingsSent, pongsReceived atomic.Uint64 // WebSocket liveness (ping.go)
}

// upgradeRefusal is why a WebSocket upgrade was refused; also the label of
// stompbox_upgrade_refused_total.
type upgradeRefusal uint8

const (
	upgradeRefusedOrigin      upgradeRefusal = iota // 403: Origin not allowed
	upgradeRefusedSubprotocol                       // 400: no STOMP subprotocol offered
	upgradeRefusedAuth                              // 401 (503 when the check could not run)
	upgradeRefusedLimit                             // 429 or 503: an admission limit
	upgradeRefusalCount
)

var upgradeRefusalNames = [upgradeRefusalCount]string{"origin", "subprotocol", "auth", "limit"}

func (m *metrics) countWSClose(code wsadapter.CloseCode, byPeer bool) {
	i := len(wsCloseCodes)
	for k, known := range wsCloseCodes {
		if known == code {
			i = k
			break
		}
	}
	peer := 0
	if byPeer {
		peer = 1
	}
	m.wsCloses[peer][i].Add(1)
}

// collector exposes metrics and the build.
type collector struct {
	m                                  *metrics
	version                            string
	buildInfo, connections, accepted   *prometheus.Desc
	bytesIn, bytesOut, wsCloses, beats *prometheus.Desc
	refused, upgradeRefused            *prometheus.Desc
}

func newCollector(m *metrics, version string) *collector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("stompbox_"+name, help, labels, nil)
	}
	return &collector{
		m: m, version: version,
		buildInfo:   desc("build_info", "Always 1; the labels say which build is running.", "version", "goversion"),
		connections: desc("connections", "Connections open now, by transport.", "transport"),
		accepted:    desc("connections_accepted_total", "Connections accepted (WebSocket: upgraded), by transport.", "transport"),
		bytesIn:     desc("bytes_received_total", "STOMP bytes received, by transport (WebSocket framing not included).", "transport"),
		bytesOut:    desc("bytes_sent_total", "STOMP bytes sent, by transport (WebSocket framing not included).", "transport"),
		wsCloses:    desc("websocket_closes_total", "WebSocket close frames sent, by close code and by who closed first (server, or client: our echo).", "code", "initiator"),
		beats:       desc("heartbeats_sent_total", "Heart-beat EOLs sent to idle clients."),
		refused: desc("connections_refused_total", "New connections and WebSocket upgrades refused by an admission limit: "+
			"total (MaxConnections, or too many addresses tracked), per_ip (MaxConnectionsPerIP), rate (ConnectionRatePerIP).", "limit"),
		upgradeRefused: desc("upgrade_refused_total", "WebSocket upgrades refused, by reason: origin (403), subprotocol (400), "+
			"auth (upgrade token refused or missing), limit (an admission limit; also in stompbox_connections_refused_total).", "reason"),
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.buildInfo, c.connections, c.accepted, c.bytesIn, c.bytesOut, c.wsCloses, c.beats, c.refused, c.upgradeRefused} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	metric := func(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, t, v, labels...)
	}
	metric(c.buildInfo, prometheus.GaugeValue, 1, c.version, runtime.Version())
	for t := range transportCount {
		tc := &c.m.transports[t]
		metric(c.connections, prometheus.GaugeValue, float64(tc.open.Load()), t.String())
		metric(c.accepted, prometheus.CounterValue, float64(tc.accepted.Load()), t.String())
		metric(c.bytesIn, prometheus.CounterValue, float64(tc.bytesIn.Load()), t.String())
		metric(c.bytesOut, prometheus.CounterValue, float64(tc.bytesOut.Load()), t.String())
	}
	for peer, initiator := range []string{"server", "client"} {
		for i := range len(wsCloseCodes) + 1 {
			code := "other"
			if i < len(wsCloseCodes) {
				code = strconv.Itoa(int(wsCloseCodes[i]))
			}
			metric(c.wsCloses, prometheus.CounterValue, float64(c.m.wsCloses[peer][i].Load()), code, initiator)
		}
	}
	metric(c.beats, prometheus.CounterValue, float64(c.m.heartbeatsSent.Load()))
	for l := range limitCount {
		metric(c.refused, prometheus.CounterValue, float64(c.m.refused[l].Load()), l.String())
	}
	for r := range upgradeRefusalCount {
		metric(c.upgradeRefused, prometheus.CounterValue, float64(c.m.upgradeRefused[r].Load()), upgradeRefusalNames[r])
	}
}
