package server

import (
	"cmp"
	"context"
	"encoding/base64"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence"
	"github.com/stompbox/stompbox/server/cluster"
)

// overview is /api/overview, and each event of /api/events.
type overview struct {
	Version            string       `json:"version"`
	Node               string       `json:"node"`
	Started            string       `json:"started"`
	UptimeSeconds      float64      `json:"uptime_seconds"`
	Connections        int          `json:"connections"`
	ParkedSessions     int          `json:"parked_sessions"`
	Destinations       int          `json:"destinations"`
	QueuedMessages     int          `json:"queued_messages"`
	QueuedBytes        int          `json:"queued_bytes"`
	MessagesInTotal    uint64       `json:"messages_in_total"`
	MessagesOutTotal   uint64       `json:"messages_out_total"`
	MessagesInRate     float64      `json:"messages_in_rate"`
	MessagesOutRate    float64      `json:"messages_out_rate"`
	BlockedConnections int          `json:"blocked_connections"`
	Journal            *journalJSON `json:"journal"`
	Cluster            *clusterJSON `json:"cluster"`
}

// snapshot takes (or reuses) the latest rate snapshot.
func (a *adminAPI) snapshot() rateSnapshot {
	return a.rates.snapshot(a.now(), a.broker, a.srv.broker.Stats())
}

// readOverview gathers the overview.
func (a *adminAPI) readOverview(ctx context.Context) overview {
	snap := a.snapshot()
	now := a.now()
	started := a.started
	o := overview{
		Version:          a.srv.cfg.Version,
		Started:          apiTime(started),
		UptimeSeconds:    now.Sub(started).Seconds(),
		ParkedSessions:   a.srv.broker.ParkedSessions(),
		Destinations:     len(snap.dests),
		MessagesInTotal:  snap.in,
		MessagesOutTotal: snap.out,
		MessagesInRate:   snap.total.in,
		MessagesOutRate:  snap.total.out,
		Journal:          a.readJournal(),
		Cluster:          a.readCluster(ctx),
		Node:             a.node,
	}
	for i := range snap.dests {
		o.QueuedMessages += snap.dests[i].Messages
		o.QueuedBytes += snap.dests[i].Bytes
	}
	wires := a.srv.openWires()
	o.Connections = len(wires)
	for _, w := range wires {
		// Blocked, not Info: an overview a second with 10,000 connections
		// must not copy every session's subscriptions.
		if reason, _ := w.session.Blocked(); reason != broker.NotFull {
			o.BlockedConnections++
		}
	}
	return o
}

// overview answers GET /api/overview.
func (a *adminAPI) overview(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, a.readOverview(r.Context()))
}

// journalJSON is /api/journal.
type journalJSON struct {
	Enabled  bool       `json:"enabled"`
	Dir      string     `json:"dir,omitempty"`
	State    string     `json:"state,omitempty"`
	Error    string     `json:"error,omitempty"`
	Size     *int64     `json:"size_bytes,omitempty"`
	Segments *int       `json:"segments,omitempty"`
	Sync     string     `json:"sync,omitempty"`
	Fsync    *fsyncJSON `json:"fsync_seconds,omitempty"`
}

// fsyncJSON summarizes fsync latencies, in seconds.
type fsyncJSON struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	Max   float64 `json:"max"`
}

// journalInfo is a journal that can describe itself (persistence.File).
type journalInfo interface {
	Info() persistence.Info
}

// readJournal describes the journal; nil when there is none.
func (a *adminAPI) readJournal() *journalJSON {
	j := a.srv.cfg.Broker.Journal
	if j == nil {
		return nil
	}
	out := &journalJSON{Enabled: true}
	ji, ok := j.(journalInfo)
	if !ok {
		return out // a journal that says nothing of itself: enabled, the rest absent
	}
	in := ji.Info()
	out.Dir, out.Sync, out.Size, out.Segments = in.Dir, in.Sync, &in.Size, &in.Segments
	out.State = "ok"
	switch {
	case in.Failed != nil:
		out.State, out.Error = "failed", in.Failed.Error()
	case in.Damage != "":
		out.State, out.Error = "damaged", in.Damage
	}
	out.Fsync = &fsyncJSON{Count: in.Fsync.Count, P50: in.Fsync.P50.Seconds(), P99: in.Fsync.P99.Seconds(), Max: in.Fsync.Max.Seconds()}
	return out
}

// journal answers GET /api/journal.
func (a *adminAPI) journal(w http.ResponseWriter, _ *http.Request) {
	j := a.readJournal()
	if j == nil {
		j = &journalJSON{}
	}
	writeJSON(w, http.StatusOK, j)
}

// clusterJSON is /api/cluster.
type clusterJSON struct {
	Enabled bool          `json:"enabled"`
	Name    string        `json:"name,omitempty"`
	Node    string        `json:"node,omitempty"`
	Ready   *bool         `json:"ready,omitempty"`
	Error   string        `json:"error,omitempty"`
	NATS    []string      `json:"nats,omitempty"`
	Nodes   []clusterNode `json:"nodes,omitempty"`
}

// clusterNode is one node this node knows of (itself: nodes do not track
// each other).
type clusterNode struct {
	Name        string `json:"name"`
	Self        bool   `json:"self"`
	SessionNode string `json:"session_node,omitempty"`
	Connected   bool   `json:"connected"`
}

// clusterInfo is a cluster node that can describe itself (cluster.Node).
type clusterInfo interface {
	Info() cluster.Info
}

// clusterReadyWait bounds the readiness check of /api/cluster (the node
// caches its answer, so most checks do not wait).
const clusterReadyWait = time.Second

// readCluster describes the cluster; nil when not clustered.
func (a *adminAPI) readCluster(ctx context.Context) *clusterJSON {
	c := a.srv.cfg.Cluster
	if c == nil {
		return nil
	}
	out := &clusterJSON{Enabled: true}
	ctx, cancel := context.WithTimeout(ctx, clusterReadyWait)
	err := c.Ready(ctx)
	cancel()
	ready := err == nil
	out.Ready = &ready
	if err != nil {
		out.Error = err.Error()
	}
	if ci, ok := c.(clusterInfo); ok {
		in := ci.Info()
		out.Name, out.Node, out.NATS = in.Name, in.Node, in.Servers
		out.Nodes = []clusterNode{{Name: in.Node, Self: true, SessionNode: in.SessionNode, Connected: in.Connected}}
	}
	return out
}

// cluster answers GET /api/cluster.
func (a *adminAPI) cluster(w http.ResponseWriter, r *http.Request) {
	c := a.readCluster(r.Context())
	if c == nil {
		c = &clusterJSON{}
	}
	writeJSON(w, http.StatusOK, c)
}

// destItem is one destination of /api/destinations.
type destItem struct {
	VHost          string  `json:"vhost"`
	Name           string  `json:"name"`
	Kind           string  `json:"kind"`
	Messages       int     `json:"messages"`
	Bytes          int     `json:"bytes"`
	Unacked        int     `json:"unacked"`
	Consumers      int     `json:"consumers"`
	OldestAge      float64 `json:"oldest_age_seconds"`
	DLQ            string  `json:"dlq"`
	EnqueuedTotal  uint64  `json:"enqueued_total"`
	DeliveredTotal uint64  `json:"delivered_total"`
	InRate         float64 `json:"in_rate"`
	OutRate        float64 `json:"out_rate"`
}

var destSpec = listSpec[destItem]{
	text: func(d *destItem) []string { return []string{d.VHost, d.Name, d.Kind, d.DLQ} },
	by: map[string]func(a, b *destItem) int{
		"name":               field(func(d *destItem) string { return d.Name }),
		"kind":               field(func(d *destItem) string { return d.Kind }),
		"messages":           field(func(d *destItem) int { return d.Messages }),
		"bytes":              field(func(d *destItem) int { return d.Bytes }),
		"unacked":            field(func(d *destItem) int { return d.Unacked }),
		"consumers":          field(func(d *destItem) int { return d.Consumers }),
		"oldest_age_seconds": field(func(d *destItem) float64 { return d.OldestAge }),
		"in_rate":            field(func(d *destItem) float64 { return d.InRate }),
		"out_rate":           field(func(d *destItem) float64 { return d.OutRate }),
	},
	key: func(a, b *destItem) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.VHost, b.VHost)) },
}

// destinations answers GET /api/destinations.
func (a *adminAPI) destinations(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	p, err := parseListParams(v, destSpec.sortFields(), "name")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	kind, vhost := v.Get("kind"), v.Get("vhost")
	snap := a.snapshot()
	now := a.now()
	items := make([]destItem, 0, len(snap.dests))
	for i := range snap.dests {
		d := &snap.dests[i]
		if (kind != "" && string(d.Kind) != kind) || (vhost != "" && d.VHost != vhost) {
			continue
		}
		rate := snap.rates[destKey{d.VHost, d.Name}]
		it := destItem{
			VHost: d.VHost, Name: d.Name, Kind: string(d.Kind), Messages: d.Messages, Bytes: d.Bytes,
			Unacked: d.Unacked, Consumers: d.Consumers, DLQ: d.DLQ,
			EnqueuedTotal: d.Enqueued, DeliveredTotal: d.Delivered, InRate: rate.in, OutRate: rate.out,
		}
		if !d.Oldest.IsZero() {
			it.OldestAge = max(0, now.Sub(d.Oldest).Seconds())
		}
		items = append(items, it)
	}
	writeJSON(w, http.StatusOK, page(items, p, &destSpec, nil))
}

// durableItem is one durable subscription of /api/durables.
type durableItem struct {
	VHost      string  `json:"vhost"`
	User       string  `json:"user"`
	Name       string  `json:"name"`
	Topic      string  `json:"topic"`
	Queue      string  `json:"queue"`
	Messages   int     `json:"messages"`
	Bytes      int     `json:"bytes"`
	Active     bool    `json:"active"`
	LastActive *string `json:"last_active"`
}

var durableSpec = listSpec[durableItem]{
	text: func(d *durableItem) []string { return []string{d.VHost, d.User, d.Name, d.Topic, d.Queue} },
	by: map[string]func(a, b *durableItem) int{
		"vhost":    field(func(d *durableItem) string { return d.VHost }),
		"user":     field(func(d *durableItem) string { return d.User }),
		"name":     field(func(d *durableItem) string { return d.Name }),
		"topic":    field(func(d *durableItem) string { return d.Topic }),
		"queue":    field(func(d *durableItem) string { return d.Queue }),
		"messages": field(func(d *durableItem) int { return d.Messages }),
		"bytes":    field(func(d *durableItem) int { return d.Bytes }),
	},
	key: func(a, b *durableItem) int {
		return cmp.Or(cmp.Compare(a.Queue, b.Queue), cmp.Compare(a.VHost, b.VHost))
	},
}

// durables answers GET /api/durables.
func (a *adminAPI) durables(w http.ResponseWriter, r *http.Request) {
	p, err := parseListParams(r.URL.Query(), durableSpec.sortFields(), "name")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	ds := a.broker.Durables(nil)
	items := make([]durableItem, 0, len(ds))
	for _, d := range ds {
		items = append(items, durableItem{
			VHost: d.VHost, User: d.User, Name: d.Name, Topic: d.Topic, Queue: d.Queue,
			Messages: d.Messages, Bytes: d.Bytes, Active: d.Active, LastActive: apiTimeOrNull(d.LastActive),
		})
	}
	writeJSON(w, http.StatusOK, page(items, p, &durableSpec, nil))
}

// Peek bounds.
const (
	defaultPeekLimit   = 10
	maxPeekLimit       = 100
	defaultPeekPreview = 256
	maxPeekPreview     = 4096
)

// peekedJSON is one message of /api/queues/peek.
type peekedJSON struct {
	ID           string      `json:"id"`
	Headers      [][2]string `json:"headers"`
	BodySize     int         `json:"body_size"`
	Body         string      `json:"body"`
	BodyEncoding string      `json:"body_encoding"`
	Persistent   bool        `json:"persistent"`
	Enqueued     *string     `json:"enqueued"`
	Deliveries   int         `json:"deliveries"`
	Unacked      bool        `json:"unacked"`
}

// peek answers GET /api/queues/peek.
func (a *adminAPI) peek(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	vhost, dest := v.Get("vhost"), v.Get("destination")
	if vhost == "" {
		vhost = broker.DefaultVirtualHost
	}
	if dest == "" {
		writeError(w, http.StatusBadRequest, "destination: required")
		return
	}
	limit, err := boundedInt(v.Get("limit"), defaultPeekLimit, maxPeekLimit)
	if err != nil {
		writeError(w, http.StatusBadRequest, "limit: "+err.Error())
		return
	}
	preview, err := boundedInt(v.Get("preview"), defaultPeekPreview, maxPeekPreview)
	if err != nil {
		writeError(w, http.StatusBadRequest, "preview: "+err.Error())
		return
	}
	msgs, err := a.broker.PeekQueue(vhost, dest, limit, preview)
	if err != nil {
		writeError(w, brokerStatus(err), err.Error())
		return
	}
	items := make([]peekedJSON, 0, len(msgs))
	for _, m := range msgs {
		it := peekedJSON{
			ID: m.ID, Headers: m.Headers, BodySize: m.BodySize, Persistent: m.Persistent,
			Enqueued: apiTimeOrNull(m.Enqueued), Deliveries: m.Deliveries, Unacked: m.Unacked,
			Body: string(m.Body), BodyEncoding: "text",
		}
		if it.Headers == nil {
			it.Headers = [][2]string{}
		}
		switch cut := validPrefix(m.Body); {
		case cut == len(m.Body):
		case m.BodySize > len(m.Body) && len(m.Body)-cut < utf8.UTFMax:
			it.Body = string(m.Body[:cut]) // text whose last character the preview cut
		default:
			it.Body, it.BodyEncoding = base64.StdEncoding.EncodeToString(m.Body), "base64"
		}
		items = append(items, it)
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items})
}

// validPrefix is the length of b's longest valid UTF-8 prefix.
func validPrefix(b []byte) int {
	n := 0
	for n < len(b) {
		r, size := utf8.DecodeRune(b[n:])
		if r == utf8.RuneError && size <= 1 {
			return n
		}
		n += size
	}
	return n
}

// boundedInt reads an integer in [1, most], def when s is empty.
func boundedInt(s string, def, most int) (int, error) {
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		return 0, errBounded(most)
	}
	return n, nil
}

// errBounded is boundedInt's error.
type errBounded int

func (e errBounded) Error() string { return "want an integer from 1 to " + strconv.Itoa(int(e)) }
