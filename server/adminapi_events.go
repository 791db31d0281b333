package server

import (
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Event stream intervals, in seconds.
const (
	defaultEventInterval = 1
	maxEventInterval     = 10
)

// events answers GET /api/events: an "overview" event every interval
// until the client goes or the server shuts down. At most maxEventStreams
// at once (503 past it). The stream runs on the request's own goroutine,
// which net/http owns; it ends with the request's context (the client
// gone, the listener closed) or with stop (Shutdown).
func (a *adminAPI) events(w http.ResponseWriter, r *http.Request) {
	interval, err := boundedInt(r.URL.Query().Get("interval"), defaultEventInterval, maxEventInterval)
	if err != nil {
		writeError(w, http.StatusBadRequest, "interval: "+err.Error())
		return
	}
	rc := http.NewResponseController(w)
	select {
	case a.streams <- struct{}{}:
		defer func() { <-a.streams }()
	default:
		writeError(w, http.StatusServiceUnavailable, "too many event streams open (at most "+strconv.Itoa(maxEventStreams)+")")
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no") // a reverse proxy must not hold events back
	w.WriteHeader(http.StatusOK)
	// The write deadline set per event would outlive the stream on a
	// kept-alive connection: cleared on the way out.
	defer func() { _ = rc.SetWriteDeadline(time.Time{}) }()
	tick := time.NewTicker(time.Duration(interval) * time.Second)
	defer tick.Stop()
	buf := make([]byte, 0, 1024)
	for {
		o := a.readOverview(r.Context())
		data, err := json.Marshal(o)
		if err != nil {
			return
		}
		buf = append(buf[:0], "event: overview\ndata: "...)
		buf = append(buf, data...)
		buf = append(buf, "\n\n"...)
		// A client that stops reading is dropped after a write timeout.
		_ = rc.SetWriteDeadline(time.Now().Add(a.srv.cfg.WriteTimeout))
		if _, err := w.Write(buf); err != nil {
			return
		}
		if rc.Flush() != nil {
			return
		}
		select {
		case <-tick.C:
		case <-r.Context().Done():
			return
		case <-a.done:
			return
		}
	}
}
