package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/stompbox/stompbox/broker"
)

// The admin API (docs/operations.md, "Admin API"): JSON over the admin
// listener, read by `stompbox ctl` and the console. Its handlers read the
// broker through the small interface below, so that error paths the real
// broker rarely takes (a failed journal) are tested with a fake.

// adminBroker is what the admin API reads and changes of the broker
// (*broker.Broker).
type adminBroker interface {
	Destinations(dst []broker.DestinationInfo) []broker.DestinationInfo
	Durables(dst []broker.DurableInfo) []broker.DurableInfo
	PeekQueue(vhost, name string, limit, preview int) ([]broker.PeekedMessage, error)
	PurgeQueue(vhost, name string) (purged int, err error)
	DeleteQueue(vhost, name string) (dropped int, err error)
	MoveDeadLetters(vhost, dlq string, max int) (moved int, err error)
}

// adminAPI serves /api/ of the admin listener.
type adminAPI struct {
	srv    *Server      // immutable
	broker adminBroker  // immutable (a test swaps in a fake before its requests)
	log    *slog.Logger // immutable
	// now is the clock of rates and ages (immutable).
	now func() time.Time
	// started is when the server was made; node is this node's name (the
	// cluster's, or the host's). Immutable.
	started time.Time
	node    string
	auth    adminAuth
	rates   rateKeeper
	// streams holds a token per open /api/events stream.
	streams chan struct{}
	// perClient counts the open streams of each client (streamOwner),
	// so that one cannot take every slot: guarded by perClientMu.
	perClientMu sync.Mutex
	perClient   map[string]int
	// done is closed by stop (Shutdown): event streams end.
	done     chan struct{}
	stopOnce sync.Once
}

// maxEventStreams bounds the /api/events streams open at once, and
// maxEventStreamsPerClient those of one client (a console holds one).
const (
	maxEventStreams          = 32
	maxEventStreamsPerClient = 8
)

func newAdminAPI(s *Server) *adminAPI {
	a := &adminAPI{
		srv:       s,
		log:       s.cfg.Logger,
		broker:    s.broker,
		now:       time.Now,
		streams:   make(chan struct{}, maxEventStreams),
		perClient: make(map[string]int),
		done:      make(chan struct{}),
	}
	a.started = a.now()
	a.node, _ = os.Hostname()
	if ci, ok := s.cfg.Cluster.(clusterInfo); ok {
		a.node = ci.Info().Node
	}
	a.auth = newAdminAuth(s.cfg, s.broker.DelayAuthFailure)
	return a
}

// stop ends the event streams; safe to call more than once.
func (a *adminAPI) stop() { a.stopOnce.Do(func() { close(a.done) }) }

// mount adds the API's routes to mux.
func (a *adminAPI) mount(mux *http.ServeMux) {
	route := func(method, path string, need adminRole, h http.HandlerFunc) {
		mux.Handle(method+" "+path, a.guard(need, h))
		// Any other method: a JSON 405 (the mux's own is plain text).
		mux.Handle(path, a.guard(roleRead, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", method)
			writeError(w, http.StatusMethodNotAllowed, "method not allowed: use "+method)
		}))
	}
	route("GET", "/api/overview", roleRead, a.overview)
	route("GET", "/api/connections", roleRead, a.connections)
	route("GET", "/api/connections/{id}", roleRead, a.connection)
	route("GET", "/api/destinations", roleRead, a.destinations)
	route("GET", "/api/durables", roleRead, a.durables)
	route("GET", "/api/journal", roleRead, a.journal)
	route("GET", "/api/cluster", roleRead, a.cluster)
	route("GET", "/api/queues/peek", roleRead, a.peek)
	route("GET", "/api/events", roleRead, a.events)
	route("POST", "/api/connections/{id}/close", roleAdmin, a.closeConnection)
	route("POST", "/api/queues/purge", roleAdmin, a.purge)
	route("POST", "/api/queues/delete", roleAdmin, a.deleteQueue)
	route("POST", "/api/queues/move-dlq", roleAdmin, a.moveDLQ)
	// Everything else under /api/: a JSON 404.
	mux.Handle("/api/", a.guard(roleRead, func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint")
	}))
}

// writeJSON answers v with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError answers {"error": text} with status.
func writeError(w http.ResponseWriter, status int, text string) {
	writeJSON(w, status, map[string]string{"error": text})
}

// brokerStatus maps a broker error to its HTTP status.
func brokerStatus(err error) int {
	switch {
	case errors.Is(err, broker.ErrNoSuchDestination):
		return http.StatusNotFound
	case errors.Is(err, broker.ErrNotAQueue):
		return http.StatusConflict
	case errors.Is(err, broker.ErrJournalFull), errors.Is(err, broker.ErrJournalFailed), errors.Is(err, broker.ErrQueueFull):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// apiTime formats t as the API's times: RFC 3339, milliseconds, UTC.
func apiTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z07:00") }

// apiTimeOrNull is apiTime, or nil (JSON null) for the zero time.
func apiTimeOrNull(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := apiTime(t)
	return &s
}
