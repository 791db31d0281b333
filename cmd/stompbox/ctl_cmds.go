package main

import (
	"flag"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

// ctlCommand is one command of `stompbox ctl`.
type ctlCommand struct {
	name string
	args string // the usage line after the name
	run  func(c *ctl, args []string) error
}

// ctlCommands lists the commands (ADMIN_API.md fixes their names).
func ctlCommands() []ctlCommand {
	return []ctlCommand{
		{"overview", "", (*ctl).overview},
		{"connections", "[-q S] [-sort F] [-order asc|desc] [-limit N] [-offset N]", (*ctl).connections},
		{"connection", "ID", (*ctl).connection},
		{"close", "ID [REASON...]", (*ctl).closeConn},
		{"queues", "[-kind K] [-q S] [-sort F] [-order asc|desc] [-limit N] [-offset N] (alias destinations)", (*ctl).queues},
		{"durables", "[-q S] [-sort F] [-order asc|desc] [-limit N] [-offset N]", (*ctl).durables},
		{"journal", "", (*ctl).journal},
		{"cluster", "", (*ctl).cluster},
		{"purge", "[-vhost V] DEST", (*ctl).purge},
		{"delete", "[-vhost V] DEST", (*ctl).deleteQueue},
		{"move-dlq", "[-vhost V] [-max N] DLQ", (*ctl).moveDLQ},
		{"peek", "[-vhost V] [-n N] DEST", (*ctl).peek},
	}
}

func ctlCommandNamed(name string) (ctlCommand, bool) {
	if name == "destinations" {
		name = "queues"
	}
	for _, cmd := range ctlCommands() {
		if cmd.name == name {
			return cmd, true
		}
	}
	return ctlCommand{}, false
}

// newTable is an aligned table on w.
func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
}

// row writes one tab-separated table row.
func row(tw *tabwriter.Writer, cells ...string) {
	for i, c := range cells {
		cells[i] = terminalSafe(c)
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

// terminalSafe quotes a cell holding control characters: names come from
// clients (a destination may hold an escape sequence or a tab), and must
// neither drive the operator's terminal nor break the table.
func terminalSafe(s string) string {
	if strings.ContainsFunc(s, unicode.IsControl) {
		return strconv.Quote(s)
	}
	return s
}

// noArgs parses a command that takes no flags and no arguments.
func noArgs(name string, args []string) error {
	fs := flag.NewFlagSet("stompbox ctl "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	return nil
}

// listFlags are the paging flags every list command has; they map to the
// API's query parameters.
type listFlags struct {
	q, sort, order string
	limit, offset  int
}

func (l *listFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.q, "q", "", "case-insensitive substring filter (q)")
	fs.StringVar(&l.sort, "sort", "", "field to sort by (sort)")
	fs.StringVar(&l.order, "order", "", "asc or desc (order)")
	fs.IntVar(&l.limit, "limit", 0, "items per page, 1..1000 (limit; API default 100)")
	fs.IntVar(&l.offset, "offset", 0, "items to skip (offset)")
}

// query is the flags given, as the API's parameters (those not given are
// left to the API's defaults).
func (l *listFlags) query() (url.Values, error) {
	v := url.Values{}
	if l.limit < 0 || l.offset < 0 {
		return nil, usagef("-limit and -offset cannot be negative")
	}
	if l.order != "" && l.order != "asc" && l.order != "desc" {
		return nil, usagef("-order %q: want asc or desc", l.order)
	}
	for k, s := range map[string]string{"q": l.q, "sort": l.sort, "order": l.order} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if l.limit > 0 {
		v.Set("limit", strconv.Itoa(l.limit))
	}
	if l.offset > 0 {
		v.Set("offset", strconv.Itoa(l.offset))
	}
	return v, nil
}

// page is the envelope of every list.
type page[T any] struct {
	Total  int `json:"total"`
	Offset int `json:"offset"`
	Limit  int `json:"limit"`
	Items  []T `json:"items"`
}

// footer says which part of the list a page is when it is not all of it.
func (p *page[T]) footer(w io.Writer) {
	if p.Offset == 0 && len(p.Items) == p.Total {
		return
	}
	first := p.Offset + 1
	if len(p.Items) == 0 {
		first = p.Offset
	}
	fmt.Fprintf(w, "(%d-%d of %d; -offset and -limit page)\n", first, p.Offset+len(p.Items), p.Total)
}

// list runs a list command: flags (the paging ones plus extra), the
// request, the table.
func list[T any](c *ctl, name, path string, args []string, extra func(*flag.FlagSet) func(url.Values), print func(*tabwriter.Writer, []T)) error {
	fs := flag.NewFlagSet("stompbox ctl "+name, flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	var lf listFlags
	lf.register(fs)
	var addExtra func(url.Values)
	if extra != nil {
		addExtra = extra(fs)
	}
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("unexpected argument %q", pos[0])
	}
	q, err := lf.query()
	if err != nil {
		return err
	}
	if addExtra != nil {
		addExtra(q)
	}
	var p page[T]
	if printed, err := c.get(path, q, &p); err != nil || printed {
		return err
	}
	tw := newTable(c.stdout)
	print(tw, p.Items)
	if err := tw.Flush(); err != nil {
		return err
	}
	p.footer(c.stdout)
	return nil
}

// connectionItem is an item of /api/connections.
type connectionItem struct {
	ID            string    `json:"id"`
	User          string    `json:"user"`
	Transport     string    `json:"transport"`
	Remote        string    `json:"remote"`
	VHost         string    `json:"vhost"`
	Version       string    `json:"version"`
	Since         time.Time `json:"since"`
	Connected     time.Time `json:"connected"`
	Subscriptions []struct {
		ID          string `json:"id"`
		Destination string `json:"destination"`
		Ack         string `json:"ack"`
		Unacked     int    `json:"unacked"`
		Durable     string `json:"durable"`
	} `json:"subscriptions"`
	FramesIn    uint64 `json:"frames_in"`
	FramesOut   uint64 `json:"frames_out"`
	BytesIn     int64  `json:"bytes_in"`
	BytesOut    int64  `json:"bytes_out"`
	OutboxBytes int64  `json:"outbox_bytes"`
	HeldBytes   int64  `json:"held_bytes"`
	Blocked     string `json:"blocked"`
	Unacked     int    `json:"unacked"`
}

func (c *ctl) connections(args []string) error {
	return list(c, "connections", "/api/connections", args, nil, func(t *tabwriter.Writer, items []connectionItem) {
		row(t, "ID", "USER", "TRANSPORT", "REMOTE", "VHOST", "AGE", "SUBS", "FRAMES IN", "FRAMES OUT", "BYTES IN", "BYTES OUT", "HELD", "UNACKED", "BLOCKED")
		for _, it := range items {
			row(t, it.ID, orDash(it.User), it.Transport, it.Remote, orDash(it.VHost), c.fmtSince(it.Since),
				strconv.Itoa(len(it.Subscriptions)), strconv.FormatUint(it.FramesIn, 10), strconv.FormatUint(it.FramesOut, 10),
				fmtBytes(it.BytesIn), fmtBytes(it.BytesOut), fmtBytes(it.HeldBytes), strconv.Itoa(it.Unacked), orDash(it.Blocked))
		}
	})
}

func (c *ctl) connection(args []string) error {
	fs := flag.NewFlagSet("stompbox ctl connection", flag.ContinueOnError)
	fs.SetOutput(c.stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("want one connection ID")
	}
	var it connectionItem
	if printed, err := c.get("/api/connections/"+url.PathEscape(pos[0]), nil, &it); err != nil || printed {
		return err
	}
	tw := newTable(c.stdout)
	connected := "-"
	if !it.Connected.IsZero() {
		connected = c.fmtSince(it.Connected) + " ago"
	}
	for _, kv := range [][2]string{
		{"id", it.ID}, {"user", orDash(it.User)}, {"transport", it.Transport}, {"remote", it.Remote},
		{"vhost", orDash(it.VHost)}, {"version", orDash(it.Version)},
		{"accepted", c.fmtSince(it.Since) + " ago"}, {"connected", connected},
		{"frames in/out", fmt.Sprintf("%d / %d", it.FramesIn, it.FramesOut)},
		{"bytes in/out", fmtBytes(it.BytesIn) + " / " + fmtBytes(it.BytesOut)},
		{"outbox", fmtBytes(it.OutboxBytes)}, {"held", fmtBytes(it.HeldBytes)},
		{"unacked", strconv.Itoa(it.Unacked)}, {"blocked", orDash(it.Blocked)},
	} {
		row(tw, kv[0]+":", kv[1])
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(it.Subscriptions) == 0 {
		fmt.Fprintln(c.stdout, "no subscriptions")
		return nil
	}
	fmt.Fprintln(c.stdout)
	row(tw, "SUBSCRIPTION", "DESTINATION", "ACK", "UNACKED", "DURABLE")
	for _, s := range it.Subscriptions {
		row(tw, s.ID, s.Destination, s.Ack, strconv.Itoa(s.Unacked), orDash(s.Durable))
	}
	return tw.Flush()
}

func (c *ctl) closeConn(args []string) error {
	// No flags: every word after the ID is the reason, as typed.
	if len(args) == 0 || args[0] == "" || strings.HasPrefix(args[0], "-") {
		return usagef("want a connection ID")
	}
	id, reason := args[0], strings.Join(args[1:], " ")
	var res struct {
		Closed bool `json:"closed"`
	}
	if printed, err := c.post("/api/connections/"+url.PathEscape(id)+"/close", map[string]string{"reason": reason}, &res); err != nil || printed {
		return err
	}
	if !res.Closed {
		return fmt.Errorf("connection %s: the API did not close it", id)
	}
	fmt.Fprintf(c.stdout, "closed connection %s\n", id)
	return nil
}

// destinationItem is an item of /api/destinations.
type destinationItem struct {
	VHost     string  `json:"vhost"`
	Name      string  `json:"name"`
	Kind      string  `json:"kind"`
	Messages  int64   `json:"messages"`
	Bytes     int64   `json:"bytes"`
	Unacked   int64   `json:"unacked"`
	Consumers int     `json:"consumers"`
	OldestAge float64 `json:"oldest_age_seconds"`
	DLQ       string  `json:"dlq"`
	InRate    float64 `json:"in_rate"`
	OutRate   float64 `json:"out_rate"`
}

func (c *ctl) queues(args []string) error {
	extra := func(fs *flag.FlagSet) func(url.Values) {
		kind := fs.String("kind", "", "queue, topic, durable, temporary or dlq (kind)")
		return func(q url.Values) {
			if *kind != "" {
				q.Set("kind", *kind)
			}
		}
	}
	return list(c, "queues", "/api/destinations", args, extra, func(t *tabwriter.Writer, items []destinationItem) {
		row(t, "VHOST", "NAME", "KIND", "MESSAGES", "BYTES", "UNACKED", "CONSUMERS", "OLDEST", "IN", "OUT", "DLQ")
		for _, it := range items {
			oldest := "-"
			if it.OldestAge > 0 {
				oldest = fmtSeconds(it.OldestAge)
			}
			row(t, it.VHost, it.Name, it.Kind, strconv.FormatInt(it.Messages, 10), fmtBytes(it.Bytes),
				strconv.FormatInt(it.Unacked, 10), strconv.Itoa(it.Consumers), oldest,
				fmtRate(it.InRate), fmtRate(it.OutRate), orDash(it.DLQ))
		}
	})
}

// durableItem is an item of /api/durables.
type durableItem struct {
	VHost      string    `json:"vhost"`
	User       string    `json:"user"`
	Name       string    `json:"name"`
	Topic      string    `json:"topic"`
	Queue      string    `json:"queue"`
	Messages   int64     `json:"messages"`
	Bytes      int64     `json:"bytes"`
	Active     bool      `json:"active"`
	LastActive time.Time `json:"last_active"`
}

func (c *ctl) durables(args []string) error {
	return list(c, "durables", "/api/durables", args, nil, func(t *tabwriter.Writer, items []durableItem) {
		row(t, "VHOST", "USER", "NAME", "TOPIC", "QUEUE", "MESSAGES", "BYTES", "ACTIVE", "IDLE")
		for _, it := range items {
			idle := "-"
			if !it.Active {
				idle = c.fmtSince(it.LastActive)
			}
			row(t, it.VHost, orDash(it.User), it.Name, it.Topic, it.Queue, strconv.FormatInt(it.Messages, 10),
				fmtBytes(it.Bytes), yesNo(it.Active), idle)
		}
	})
}
