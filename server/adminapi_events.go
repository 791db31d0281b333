package server

import (
	"encoding/json"
	"net"
	"net/http"
	"strconv"
	"strings"
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
	owner := streamOwner(r)
	if !a.takeStream(owner) {
		writeError(w, http.StatusServiceUnavailable, "too many event streams open (at most "+strconv.Itoa(maxEventStreamsPerClient)+
			" per client, "+strconv.Itoa(maxEventStreams)+" in all)")
		return
	}
	defer a.releaseStream(owner)
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

// streamOwner is who a stream counts against: the credential and the
// address it comes from (a shared read token is shared by people on
// several machines).
func streamOwner(r *http.Request) string {
	who, host := whoOf(r), r.RemoteAddr
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		host = h
	}
	if strings.HasPrefix(who, "loopback ") {
		who = "loopback" // its address is in host
	}
	return who + "|" + host
}

// takeStream takes a slot for one of owner's streams, if both the total
// and owner's share have room.
func (a *adminAPI) takeStream(owner string) bool {
	a.perClientMu.Lock()
	defer a.perClientMu.Unlock()
	if a.perClient[owner] >= maxEventStreamsPerClient {
		return false
	}
	select {
	case a.streams <- struct{}{}:
	default:
		return false
	}
	a.perClient[owner]++
	return true
}

func (a *adminAPI) releaseStream(owner string) {
	a.perClientMu.Lock()
	defer a.perClientMu.Unlock()
	<-a.streams
	if a.perClient[owner]--; a.perClient[owner] <= 0 {
		delete(a.perClient, owner)
	}
}
