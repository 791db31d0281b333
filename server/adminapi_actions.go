package server

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/stompbox/stompbox/broker"
)

// maxActionBody bounds an action's JSON body.
const maxActionBody = 16 << 10

// readBody decodes r's JSON body into dst (one object, nothing after
// it); false after answering 400 or 413.
func readBody(w http.ResponseWriter, r *http.Request, dst any) bool {
	// Required, not just checked when present: a browser sends a body
	// without Content-Type (sendBeacon, fetch no-cors) cross-site with no
	// preflight and with the cached Basic credentials; application/json
	// needs a preflight, which the API never grants.
	if mt, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";"); !strings.EqualFold(strings.TrimSpace(mt), "application/json") {
		writeError(w, http.StatusUnsupportedMediaType, "body: Content-Type must be application/json")
		return false
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxActionBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil && dec.Decode(new(json.RawMessage)) != io.EOF {
		err = errors.New("more than one JSON value")
	}
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, "body: too large")
			return false
		}
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// queueRequest is the body of the queue actions.
type queueRequest struct {
	VHost       string `json:"vhost"`
	Destination string `json:"destination"`
	Max         int    `json:"max"` // move-dlq only
}

// readQueueRequest reads and checks a queue action's body.
func readQueueRequest(w http.ResponseWriter, r *http.Request, withMax bool) (queueRequest, bool) {
	var q queueRequest
	if !readBody(w, r, &q) {
		return q, false
	}
	if q.VHost == "" {
		q.VHost = broker.DefaultVirtualHost
	}
	switch {
	case q.Destination == "":
		writeError(w, http.StatusBadRequest, "destination: required")
		return q, false
	case q.Max < 0:
		writeError(w, http.StatusBadRequest, "max: must not be negative")
		return q, false
	case q.Max != 0 && !withMax:
		writeError(w, http.StatusBadRequest, "max: only for move-dlq")
		return q, false
	}
	return q, true
}

// queueAction runs one queue action: do returns the count answered under
// key.
func (a *adminAPI) queueAction(w http.ResponseWriter, r *http.Request, name, key string, withMax bool, do func(b adminBroker, q queueRequest) (int, error)) {
	q, ok := readQueueRequest(w, r, withMax)
	if !ok {
		return
	}
	n, err := do(a.broker, q)
	if err != nil {
		status := brokerStatus(err)
		a.log.Info("admin action", "who", whoOf(r), "action", name, "vhost", q.VHost, "destination", q.Destination, "result", "refused", "status", status, "error", err, key, n)
		if n > 0 {
			// A move that stopped part-way: what was moved stays moved.
			writeJSON(w, status, map[string]any{"error": err.Error(), key: n})
			return
		}
		writeError(w, status, err.Error())
		return
	}
	a.log.Info("admin action", "who", whoOf(r), "action", name, "vhost", q.VHost, "destination", q.Destination, "result", "done", key, n)
	writeJSON(w, http.StatusOK, map[string]int{key: n})
}

// purge answers POST /api/queues/purge.
func (a *adminAPI) purge(w http.ResponseWriter, r *http.Request) {
	a.queueAction(w, r, "purge", "purged", false, func(b adminBroker, q queueRequest) (int, error) {
		return b.PurgeQueue(q.VHost, q.Destination)
	})
}

// deleteQueue answers POST /api/queues/delete.
func (a *adminAPI) deleteQueue(w http.ResponseWriter, r *http.Request) {
	a.queueAction(w, r, "delete", "deleted", false, func(b adminBroker, q queueRequest) (int, error) {
		return b.DeleteQueue(q.VHost, q.Destination)
	})
}

// moveDLQ answers POST /api/queues/move-dlq.
func (a *adminAPI) moveDLQ(w http.ResponseWriter, r *http.Request) {
	a.queueAction(w, r, "move-dlq", "moved", true, func(b adminBroker, q queueRequest) (int, error) {
		return b.MoveDeadLetters(q.VHost, q.Destination, q.Max)
	})
}
