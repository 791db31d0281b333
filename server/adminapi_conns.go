package server

import (
	"cmp"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// connItem is one connection of /api/connections.
type connItem struct {
	ID            string    `json:"id"`
	User          string    `json:"user"`
	Transport     string    `json:"transport"`
	Remote        string    `json:"remote"`
	VHost         string    `json:"vhost"`
	Version       string    `json:"version"`
	Since         lazyTime  `json:"since"`
	Connected     lazyTime  `json:"connected"`
	Subscriptions []subItem `json:"subscriptions"`
	FramesIn      uint64    `json:"frames_in"`
	FramesOut     uint64    `json:"frames_out"`
	BytesIn       uint64    `json:"bytes_in"`
	BytesOut      uint64    `json:"bytes_out"`
	OutboxBytes   int       `json:"outbox_bytes"`
	HeldBytes     int       `json:"held_bytes"`
	Blocked       string    `json:"blocked"`
	Unacked       int       `json:"unacked"`
	since         int64     // for sorting: accepted, unix ns
}

// lazyTime is a time formatted as apiTime only when it is encoded (null
// for the zero time): of 10,000 connections read for a sort, one page is.
type lazyTime time.Time

// MarshalJSON implements json.Marshaler.
func (t lazyTime) MarshalJSON() ([]byte, error) {
	tt := time.Time(t)
	if tt.IsZero() {
		return []byte("null"), nil
	}
	return []byte(`"` + apiTime(tt) + `"`), nil
}

// UnmarshalJSON implements json.Unmarshaler (for clients in Go, such as
// the tests).
func (t *lazyTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*t = lazyTime{}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	tt, err := time.Parse(time.RFC3339Nano, s)
	*t = lazyTime(tt)
	return err
}

// subItem is one subscription of a connection.
type subItem struct {
	ID          string `json:"id"`
	Destination string `json:"destination"`
	Ack         string `json:"ack"`
	Unacked     int    `json:"unacked"`
	Durable     string `json:"durable"`
}

var connSpec = listSpec[connItem]{
	text: func(c *connItem) []string { return []string{c.ID, c.User, c.Transport, c.Remote, c.VHost, c.Blocked} },
	by: map[string]func(a, b *connItem) int{
		"id":           field(func(c *connItem) string { return c.ID }),
		"user":         field(func(c *connItem) string { return c.User }),
		"transport":    field(func(c *connItem) string { return c.Transport }),
		"remote":       field(func(c *connItem) string { return c.Remote }),
		"vhost":        field(func(c *connItem) string { return c.VHost }),
		"since":        field(func(c *connItem) int64 { return c.since }),
		"frames_in":    field(func(c *connItem) uint64 { return c.FramesIn }),
		"frames_out":   field(func(c *connItem) uint64 { return c.FramesOut }),
		"bytes_in":     field(func(c *connItem) uint64 { return c.BytesIn }),
		"bytes_out":    field(func(c *connItem) uint64 { return c.BytesOut }),
		"outbox_bytes": field(func(c *connItem) int { return c.OutboxBytes }),
		"held_bytes":   field(func(c *connItem) int { return c.HeldBytes }),
		"unacked":      field(func(c *connItem) int { return c.Unacked }),
	},
	// Ties go to the older connection: its accepted time is at hand in a
	// sort of wires too (wirePage), where an id is a string elsewhere in
	// memory.
	key: func(a, b *connItem) int { return cmp.Or(cmp.Compare(a.since, b.since), cmp.Compare(a.ID, b.ID)) },
}

// openWires copies the open connections under s.mu; they are read
// without it.
func (s *Server) openWires() []*wire {
	s.mu.Lock()
	ws := make([]*wire, 0, len(s.conns))
	for c := range s.conns {
		ws = append(ws, c.base())
	}
	s.mu.Unlock()
	return ws
}

// connItemOf reads one connection.
func (a *adminAPI) connItemOf(w *wire) connItem {
	it := connItem{
		ID:            w.session.ID(),
		Transport:     w.kind.String(),
		Remote:        w.nc.RemoteAddr().String(),
		Since:         lazyTime(w.accepted),
		BytesIn:       w.bytesIn.Load(),
		BytesOut:      w.bytesOut.Load(),
		Subscriptions: []subItem{},
		since:         w.accepted.UnixNano(),
	}
	in := w.session.Info()
	it.User, it.VHost, it.Version = in.User, in.VHost, in.Version
	it.Connected = lazyTime(in.Connected)
	it.FramesIn, it.FramesOut = in.FramesIn, in.FramesOut
	it.OutboxBytes, it.HeldBytes, it.Blocked, it.Unacked = in.OutboxBytes, in.HeldBytes, in.Blocked, in.Unacked
	for _, sub := range in.Subscriptions {
		it.Subscriptions = append(it.Subscriptions, subItem(sub))
	}
	return it
}

// wireRow is a connection read for a sort by what its wire holds. Each
// key is read once: a count moving during the sort cannot unsettle it,
// and a comparison touches the row alone, not a wire and a session
// scattered across the heap (10,000 of them miss the cache).
type wireRow struct {
	w        *wire
	id       string
	kind     transport
	accepted int64 // unix ns
	in, out  uint64
}

// wireOrder are the sorts the wire answers without its session: with no
// filter but the transport, a page of 10,000 connections reads 100
// sessions, not all of them (a console polls every second or two).
var wireOrder = map[string]func(a, b wireRow) int{
	"id":        func(a, b wireRow) int { return cmp.Compare(a.id, b.id) },
	"transport": func(a, b wireRow) int { return cmp.Compare(a.kind.String(), b.kind.String()) },
	"since":     func(a, b wireRow) int { return cmp.Compare(a.accepted, b.accepted) },
	"bytes_in":  func(a, b wireRow) int { return cmp.Compare(a.in, b.in) },
	"bytes_out": func(a, b wireRow) int { return cmp.Compare(a.out, b.out) },
}

// wirePage is page for a wireOrder sort: the same order as page,
// the items made for the page alone.
func (a *adminAPI) wirePage(wires []*wire, p listParams, transport string, by func(a, b wireRow) int) listPage[connItem] {
	rows := make([]wireRow, 0, len(wires))
	for _, wr := range wires {
		if transport == "" || wr.kind.String() == transport {
			rows = append(rows, wireRow{w: wr, id: wr.session.ID(), kind: wr.kind, accepted: wr.accepted.UnixNano(),
				in: wr.bytesIn.Load(), out: wr.bytesOut.Load()})
		}
	}
	slices.SortFunc(rows, func(x, y wireRow) int {
		c := by(x, y) // by value: &x given to a function value escapes, an allocation per comparison
		if c == 0 {
			c = cmp.Or(cmp.Compare(x.accepted, y.accepted), cmp.Compare(x.id, y.id)) // as connSpec.key
		}
		if p.desc {
			return -c
		}
		return c
	})
	out := listPage[connItem]{Total: len(rows), Offset: p.offset, Limit: p.limit, Items: []connItem{}}
	if p.offset < len(rows) {
		for _, r := range rows[p.offset:min(len(rows), p.offset+p.limit)] {
			out.Items = append(out.Items, a.connItemOf(r.w))
		}
	}
	return out
}

// findWire is the open connection whose session has id, or nil.
func (s *Server) findWire(id string) *wire {
	for _, w := range s.openWires() {
		if w.session.ID() == id {
			return w
		}
	}
	return nil
}

// connections answers GET /api/connections.
func (a *adminAPI) connections(w http.ResponseWriter, r *http.Request) {
	v := r.URL.Query()
	p, err := parseListParams(v, connSpec.sortFields(), "id")
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	transport, vhost, user := v.Get("transport"), v.Get("vhost"), v.Get("user")
	wires := a.srv.openWires()
	if by := wireOrder[p.sort]; by != nil && p.q == "" && vhost == "" && user == "" {
		writeJSON(w, http.StatusOK, a.wirePage(wires, p, transport, by))
		return
	}
	items := make([]connItem, 0, len(wires))
	for _, wr := range wires {
		if transport != "" && wr.kind.String() != transport {
			continue // cheap to check before reading the session
		}
		items = append(items, a.connItemOf(wr))
	}
	keep := func(c *connItem) bool {
		return (vhost == "" || c.VHost == vhost) && (user == "" || c.User == user)
	}
	writeJSON(w, http.StatusOK, page(items, p, &connSpec, keep))
}

// connection answers GET /api/connections/{id}.
func (a *adminAPI) connection(w http.ResponseWriter, r *http.Request) {
	wr := a.srv.findWire(r.PathValue("id"))
	if wr == nil {
		writeError(w, http.StatusNotFound, "no such connection")
		return
	}
	writeJSON(w, http.StatusOK, a.connItemOf(wr))
}

// maxCloseReason bounds a close reason (the broker truncates it to 200
// bytes in the ERROR frame anyway).
const maxCloseReason = 200

// closeConnection answers POST /api/connections/{id}/close.
func (a *adminAPI) closeConnection(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Reason string `json:"reason"`
	}
	if !readBody(w, r, &body) {
		return
	}
	id := r.PathValue("id")
	reason := cleanReason(body.Reason)
	wr := a.srv.findWire(id)
	if wr == nil {
		a.log.Info("admin action", "who", whoOf(r), "action", "close", "connection", id, "result", "no such connection")
		writeError(w, http.StatusNotFound, "no such connection")
		return
	}
	wr.session.CloseByOperator(reason)
	a.log.Info("admin action", "who", whoOf(r), "action", "close", "connection", id, "reason", reason, "result", "closed")
	writeJSON(w, http.StatusOK, map[string]bool{"closed": true})
}

// cleanReason makes an operator's reason safe to log and send: valid
// UTF-8, no control characters, at most maxCloseReason bytes.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	for len(s) > maxCloseReason {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	if s == "" {
		s = "no reason given"
	}
	return s
}
