package main

import (
	"flag"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// journalInfo is /api/journal (and the overview's "journal").
type journalInfo struct {
	Enabled      bool   `json:"enabled"`
	Dir          string `json:"dir"`
	State        string `json:"state"`
	Error        string `json:"error"`
	SizeBytes    int64  `json:"size_bytes"`
	Segments     int    `json:"segments"`
	Sync         string `json:"sync"`
	FsyncSeconds struct {
		Count uint64  `json:"count"`
		P50   float64 `json:"p50"`
		P99   float64 `json:"p99"`
		Max   float64 `json:"max"`
	} `json:"fsync_seconds"`
}

// summary is the journal in one line.
func (j *journalInfo) summary() string {
	if j == nil || !j.Enabled {
		return "disabled"
	}
	s := fmt.Sprintf("%s, %s in %d segments, fsync p99 %s", j.State, fmtBytes(j.SizeBytes), j.Segments, fmtLatency(j.FsyncSeconds.P99))
	if j.Error != "" {
		s += ": " + j.Error
	}
	return s
}

// clusterInfo is /api/cluster (and the overview's "cluster"); nodes carry
// whatever the cluster package tells, beyond name and self.
type clusterInfo struct {
	Enabled bool             `json:"enabled"`
	Name    string           `json:"name"`
	Node    string           `json:"node"`
	Ready   bool             `json:"ready"`
	Error   string           `json:"error"`
	Nodes   []map[string]any `json:"nodes"`
}

func (ci *clusterInfo) summary() string {
	if ci == nil || !ci.Enabled {
		return "disabled"
	}
	ready := "not ready"
	if ci.Ready {
		ready = "ready"
	}
	s := fmt.Sprintf("%s, node %s, %s, %d nodes", ci.Name, ci.Node, ready, len(ci.Nodes))
	if ci.Error != "" {
		s += ": " + ci.Error
	}
	return s
}

func (c *ctl) overview(args []string) error {
	if err := noArgs("overview", args); err != nil {
		return err
	}
	var o struct {
		Version            string       `json:"version"`
		Node               string       `json:"node"`
		Started            time.Time    `json:"started"`
		UptimeSeconds      float64      `json:"uptime_seconds"`
		Connections        int          `json:"connections"`
		ParkedSessions     int          `json:"parked_sessions"`
		Destinations       int          `json:"destinations"`
		QueuedMessages     int64        `json:"queued_messages"`
		QueuedBytes        int64        `json:"queued_bytes"`
		MessagesInTotal    uint64       `json:"messages_in_total"`
		MessagesOutTotal   uint64       `json:"messages_out_total"`
		MessagesInRate     float64      `json:"messages_in_rate"`
		MessagesOutRate    float64      `json:"messages_out_rate"`
		BlockedConnections int          `json:"blocked_connections"`
		Journal            *journalInfo `json:"journal"`
		Cluster            *clusterInfo `json:"cluster"`
	}
	if printed, err := c.get("/api/overview", nil, &o); err != nil || printed {
		return err
	}
	tw := newTable(c.stdout)
	for _, kv := range [][2]string{
		{"version", o.Version},
		{"node", orDash(o.Node)},
		{"uptime", fmtSeconds(o.UptimeSeconds) + " (since " + o.Started.UTC().Format(time.RFC3339) + ")"},
		{"connections", fmt.Sprintf("%d (%d blocked, %d parked sessions)", o.Connections, o.BlockedConnections, o.ParkedSessions)},
		{"destinations", strconv.Itoa(o.Destinations)},
		{"queued", fmt.Sprintf("%d messages, %s", o.QueuedMessages, fmtBytes(o.QueuedBytes))},
		{"messages in", fmt.Sprintf("%s (%d total)", fmtRate(o.MessagesInRate), o.MessagesInTotal)},
		{"messages out", fmt.Sprintf("%s (%d total)", fmtRate(o.MessagesOutRate), o.MessagesOutTotal)},
		{"journal", o.Journal.summary()},
		{"cluster", o.Cluster.summary()},
	} {
		row(tw, kv[0]+":", kv[1])
	}
	return tw.Flush()
}

func (c *ctl) journal(args []string) error {
	if err := noArgs("journal", args); err != nil {
		return err
	}
	var j journalInfo
	if printed, err := c.get("/api/journal", nil, &j); err != nil || printed {
		return err
	}
	if !j.Enabled {
		fmt.Fprintln(c.stdout, "journal: disabled (no journal.dir)")
		return nil
	}
	tw := newTable(c.stdout)
	f := j.FsyncSeconds
	for _, kv := range [][2]string{
		{"dir", j.Dir}, {"state", j.State}, {"error", orDash(j.Error)},
		{"size", fmtBytes(j.SizeBytes)}, {"segments", strconv.Itoa(j.Segments)}, {"sync", j.Sync},
		{"fsyncs", fmt.Sprintf("%d (p50 %s, p99 %s, max %s)", f.Count, fmtLatency(f.P50), fmtLatency(f.P99), fmtLatency(f.Max))},
	} {
		row(tw, kv[0]+":", kv[1])
	}
	return tw.Flush()
}

func (c *ctl) cluster(args []string) error {
	if err := noArgs("cluster", args); err != nil {
		return err
	}
	var ci clusterInfo
	if printed, err := c.get("/api/cluster", nil, &ci); err != nil || printed {
		return err
	}
	fmt.Fprintln(c.stdout, "cluster:", ci.summary())
	if !ci.Enabled || len(ci.Nodes) == 0 {
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "NODE", "SELF", "DETAILS")
	for _, n := range ci.Nodes {
		name, _ := n["name"].(string)
		self, _ := n["self"].(bool)
		var details []string
		for k, v := range n {
			if k != "name" && k != "self" {
				details = append(details, fmt.Sprintf("%s=%v", k, v))
			}
		}
		sort.Strings(details) // map order is random; a table is read by eye
		row(tw, name, yesNo(self), orDash(strings.Join(details, " ")))
	}
	return tw.Flush()
}

// queueTarget is the body of the queue actions.
type queueTarget struct {
	VHost       string `json:"vhost"`
	Destination string `json:"destination"`
	Max         *int   `json:"max,omitempty"`
}

// queueArgs parses `[-vhost V] [more flags] DEST`.
func (c *ctl) queueArgs(name string, args []string, more func(*flag.FlagSet)) (queueTarget, error) {
	fs := flag.NewFlagSet("stompbox ctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	vhost := fs.String("vhost", "/", "virtual host")
	if more != nil {
		more(fs)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return queueTarget{}, err
	}
	if len(pos) != 1 || pos[0] == "" {
		return queueTarget{}, usagef("want one destination")
	}
	return queueTarget{VHost: *vhost, Destination: pos[0]}, nil
}

func (c *ctl) purge(args []string) error {
	t, err := c.queueArgs("purge", args, nil)
	if err != nil {
		return err
	}
	var res struct {
		Purged int `json:"purged"`
	}
	if printed, err := c.post("/api/queues/purge", t, &res); err != nil || printed {
		return err
	}
	fmt.Fprintf(c.stdout, "purged %d messages from %s (vhost %s)\n", res.Purged, t.Destination, t.VHost)
	return nil
}

func (c *ctl) deleteQueue(args []string) error {
	t, err := c.queueArgs("delete", args, nil)
	if err != nil {
		return err
	}
	var res struct {
		Deleted int `json:"deleted"`
	}
	if printed, err := c.post("/api/queues/delete", t, &res); err != nil || printed {
		return err
	}
	fmt.Fprintf(c.stdout, "deleted %s (vhost %s) and its %d messages\n", t.Destination, t.VHost, res.Deleted)
	return nil
}

func (c *ctl) moveDLQ(args []string) error {
	var maxMoved int
	t, err := c.queueArgs("move-dlq", args, func(fs *flag.FlagSet) {
		fs.IntVar(&maxMoved, "max", 0, "move at most this many messages (0: all)")
	})
	if err != nil {
		return err
	}
	if maxMoved < 0 {
		return usagef("-max %d: want 0 (all) or more", maxMoved)
	}
	t.Max = &maxMoved
	var res struct {
		Moved int `json:"moved"`
	}
	if printed, err := c.post("/api/queues/move-dlq", t, &res); err != nil || printed {
		return err
	}
	fmt.Fprintf(c.stdout, "moved %d messages from %s (vhost %s) back to their destinations\n", res.Moved, t.Destination, t.VHost)
	return nil
}

// peekBodyWidth bounds the body column of `peek`: the table stays one
// line per message; -json has the API's whole preview.
const peekBodyWidth = 60

func (c *ctl) peek(args []string) error {
	var n int
	t, err := c.queueArgs("peek", args, func(fs *flag.FlagSet) {
		fs.IntVar(&n, "n", 10, "messages to show, 1..100 (limit)")
	})
	if err != nil {
		return err
	}
	if n < 1 {
		return usagef("-n %d: want 1 or more", n)
	}
	q := url.Values{"vhost": {t.VHost}, "destination": {t.Destination}, "limit": {strconv.Itoa(n)}}
	var res struct {
		Items []struct {
			ID           string      `json:"id"`
			Headers      [][2]string `json:"headers"`
			BodySize     int64       `json:"body_size"`
			Body         string      `json:"body"`
			BodyEncoding string      `json:"body_encoding"`
			Persistent   bool        `json:"persistent"`
			Enqueued     time.Time   `json:"enqueued"`
			Deliveries   int         `json:"deliveries"`
			Unacked      bool        `json:"unacked"`
		} `json:"items"`
	}
	if printed, err := c.get("/api/queues/peek", q, &res); err != nil || printed {
		return err
	}
	if len(res.Items) == 0 {
		fmt.Fprintf(c.stdout, "%s (vhost %s) is empty\n", t.Destination, t.VHost)
		return nil
	}
	tw := newTable(c.stdout)
	row(tw, "ID", "AGE", "DELIVERIES", "UNACKED", "PERSISTENT", "SIZE", "BODY")
	for _, m := range res.Items {
		body := "(binary)"
		if m.BodyEncoding != "base64" {
			body = strconv.Quote(truncateRunes(m.Body, peekBodyWidth))
		}
		row(tw, m.ID, c.fmtSince(m.Enqueued), strconv.Itoa(m.Deliveries), yesNo(m.Unacked), yesNo(m.Persistent),
			fmtBytes(m.BodySize), body)
	}
	return tw.Flush()
}

// truncateRunes cuts s to at most n runes, marking the cut.
func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n]) + "…"
}
