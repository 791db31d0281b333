package server

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// The defaults of the admission limits in Config.
const (
	DefaultMaxConnections      = 100_000
	DefaultMaxConnectionsPerIP = 1000
	DefaultConnectionRatePerIP = 50.0 // new connections per second per address
	// maxTrackedIPs bounds the per-address table: an address not in it
	// when it is full is refused as if the server were full, so a spread
	// of sources cannot grow it without bound.
	maxTrackedIPs = 100_000
	// refusalWorkers bounds the goroutines writing the ERROR of a refused
	// native connection; past it, refused sockets are closed without one.
	refusalWorkers = 32
	// refusalWriteTimeout bounds writing that ERROR (a TLS handshake
	// included), and refusalLinger the reading of what the client sent
	// meanwhile, so closing does not reset the connection before the
	// client has read the ERROR.
	refusalWriteTimeout = 100 * time.Millisecond
	refusalLinger       = 100 * time.Millisecond
)

// limitKind names the admission limit that refused a connection; also the
// label of stompbox_connections_refused_total.
type limitKind uint8

const (
	limitTotal limitKind = iota // MaxConnections, or the address table is full
	limitPerIP                  // MaxConnectionsPerIP
	limitRate                   // ConnectionRatePerIP
	limitCount
)

var limitNames = [limitCount]string{"total", "per_ip", "rate"}

func (l limitKind) String() string { return limitNames[l] }

// refusal is why admit said no, and when a client should try again.
type refusal struct {
	limit      limitKind
	retryAfter time.Duration // for limitRate: until the next token
}

// explain is the plain-text reason given to the refused client.
func (r refusal) explain() string {
	switch r.limit {
	case limitPerIP:
		return "too many connections from your address (the per-address connection limit is reached)"
	case limitRate:
		return "too many new connections from your address (the per-address connection rate limit is exceeded); retry later"
	}
	return "too many connections (the server's connection limit is reached)"
}

// admission applies MaxConnections, MaxConnectionsPerIP and
// ConnectionRatePerIP to every new native and HTTP connection (and to the
// client a trusted proxy names, when it is known: move). A connection
// holds its slot from admit to release (a slot: until it closes).
type admission struct {
	maxTotal int     // immutable; < 0: unlimited
	maxPerIP int     // immutable; < 0: unlimited
	rate     float64 // immutable: tokens per second; < 0: unlimited
	burst    float64 // immutable: bucket size
	maxIPs   int     // immutable: bound of ips
	now      func() time.Time

	mu    sync.Mutex
	total int                     // guarded by mu: slots held
	ips   map[netip.Addr]*ipState // guarded by mu: by admissionKey
	// nextSweep (guarded by mu) spaces out full sweeps of a full table:
	// one sweep per bucket refill time finds every entry that can go.
	nextSweep time.Time
}

// ipState is one address's open connections and token bucket. An entry
// with no open connection and a full bucket says nothing a new entry would
// not, so it is removed.
type ipState struct {
	open   int
	tokens float64   // as of at
	at     time.Time // monotonic
}

func newAdmission(cfg Config, maxIPs int, now func() time.Time) *admission {
	a := &admission{
		maxTotal: cfg.MaxConnections,
		maxPerIP: cfg.MaxConnectionsPerIP,
		rate:     cfg.ConnectionRatePerIP,
		burst:    float64(cfg.ConnectionBurstPerIP),
		maxIPs:   maxIPs,
		now:      now,
		ips:      make(map[netip.Addr]*ipState),
	}
	return a
}

// tracksIPs reports whether any per-address limit is on.
func (a *admission) tracksIPs() bool { return a.maxPerIP >= 0 || a.rate >= 0 }

// admit takes a slot for a new connection from key, or says which limit
// refuses it. The rate is checked first: every attempt spends a token, so
// a client retrying against a full server is slowed down too.
func (a *admission) admit(key netip.Addr) (refusal, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, r, ok := a.entryLocked(key)
	if !ok {
		return r, false
	}
	if a.maxTotal >= 0 && a.total >= a.maxTotal {
		return refusal{limit: limitTotal}, false
	}
	if st != nil && a.maxPerIP >= 0 && st.open >= a.maxPerIP {
		return refusal{limit: limitPerIP}, false
	}
	a.total++
	if st != nil {
		st.open++
	}
	return refusal{}, true
}

// move transfers a slot held under from to the address to, applying to's
// rate and per-address cap but not the total (the slot is counted there
// already): a connection from a trusted proxy is admitted under the zero
// key (the total only) until the address of its client is known. On
// refusal the slot stays under from.
func (a *admission) move(from, to netip.Addr) (refusal, bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	st, r, ok := a.entryLocked(to)
	if !ok {
		return r, false
	}
	if st != nil && a.maxPerIP >= 0 && st.open >= a.maxPerIP {
		return refusal{limit: limitPerIP}, false
	}
	a.releaseIPLocked(from)
	if st != nil {
		st.open++
	}
	return refusal{}, true
}

// entryLocked finds or makes key's entry and spends one of its tokens. It
// returns a nil entry for a key no per-address limit applies to.
func (a *admission) entryLocked(key netip.Addr) (*ipState, refusal, bool) {
	if !key.IsValid() || !a.tracksIPs() {
		return nil, refusal{}, true
	}
	now := a.now()
	st := a.ips[key]
	if st == nil {
		a.sweep(now, 2)
		if len(a.ips) >= a.maxIPs && !now.Before(a.nextSweep) {
			a.sweep(now, len(a.ips))
			a.nextSweep = now.Add(a.refillTime())
		}
		if len(a.ips) >= a.maxIPs {
			return nil, refusal{limit: limitTotal}, false
		}
		st = &ipState{tokens: a.burst, at: now}
		a.ips[key] = st
	}
	if a.rate >= 0 {
		a.refill(st, now)
		if st.tokens < 1 {
			wait := time.Duration((1 - st.tokens) / a.rate * float64(time.Second))
			return nil, refusal{limit: limitRate, retryAfter: wait}, false
		}
		st.tokens--
	}
	return st, refusal{}, true
}

// release gives back the slot admit took for key.
func (a *admission) release(key netip.Addr) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.total--
	a.releaseIPLocked(key)
}

// releaseIPLocked gives back key's share of a slot.
func (a *admission) releaseIPLocked(key netip.Addr) {
	if st := a.ips[key]; st != nil {
		st.open--
		if st.open == 0 && a.idle(st, a.now()) {
			delete(a.ips, key)
		}
	}
}

// sweep removes up to n entries' worth of idle addresses, starting at a
// random point of the table (Go's map iteration order): a few per new
// address keep the table close to the addresses in use at little cost.
func (a *admission) sweep(now time.Time, n int) {
	for key, st := range a.ips {
		if n == 0 {
			return
		}
		n--
		if st.open == 0 && a.idle(st, now) {
			delete(a.ips, key)
		}
	}
}

// idle reports whether st's bucket is full again.
func (a *admission) idle(st *ipState, now time.Time) bool {
	if a.rate < 0 {
		return true
	}
	a.refill(st, now)
	return st.tokens >= a.burst
}

func (a *admission) refill(st *ipState, now time.Time) {
	if elapsed := now.Sub(st.at); elapsed > 0 {
		st.tokens = min(a.burst, st.tokens+elapsed.Seconds()*a.rate)
		st.at = now
	}
}

// refillTime is how long an empty bucket takes to fill.
func (a *admission) refillTime() time.Duration {
	if a.rate <= 0 {
		return time.Second
	}
	return max(time.Second, time.Duration(a.burst/a.rate*float64(time.Second)))
}

// tracked is the size of the address table, for tests.
func (a *admission) tracked() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.ips)
}

// held is the number of slots held, for tests.
func (a *admission) held() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.total
}

// refusalFrame is the ERROR a refused native connection gets: sent before
// CONNECT, so it is valid in every STOMP version (no escaping needed).
func refusalFrame(r refusal) []byte {
	body := r.explain()
	return []byte("ERROR\nmessage:too many connections\nerror-code:limit-exceeded\nretryable:true\n" +
		"content-type:text/plain\ncontent-length:" + strconv.Itoa(len(body)) + "\n\n" + body + "\x00")
}

// refusalResponse is what a refused HTTP connection gets before it has
// sent a request: 429 with Retry-After for the rate, else 503, and the
// connection closed. A browser shows it; an HTTP client reads it as the
// answer to its first request.
func refusalResponse(r refusal) []byte {
	status, extra := "503 Service Unavailable", ""
	if r.limit == limitRate {
		status, extra = "429 Too Many Requests", "Retry-After: "+strconv.Itoa(retryAfterSeconds(r))+"\r\n"
	}
	body := r.explain() + "\n"
	return []byte("HTTP/1.1 " + status + "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n" + extra +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body)
}

func retryAfterSeconds(r refusal) int {
	return max(1, int((r.retryAfter+time.Second-1)/time.Second))
}

// refuseNative answers a refused native connection with an ERROR and
// closes it; see refuse.
func (s *Server) refuseNative(nc net.Conn, r refusal) { s.refuse(nc, refusalFrame(r)) }

// refuse writes answer to a refused connection and closes it, off the
// accept loop: a bounded set of goroutines each spends at most
// refusalWriteTimeout+refusalLinger on it, and when all are busy (a flood)
// the socket is closed at once, so accepting never stalls. No session is
// created. The caller is a Serve loop (or holds a wg count of its own),
// which keeps s.wg above zero while it adds.
func (s *Server) refuse(nc net.Conn, answer []byte) {
	select {
	case s.refusing <- struct{}{}:
	default:
		_ = nc.Close()
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.refusing }()
		defer nc.Close()
		_ = nc.SetDeadline(time.Now().Add(refusalWriteTimeout))
		if _, err := nc.Write(answer); err != nil {
			return
		}
		if cw, ok := nc.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		_ = nc.SetReadDeadline(time.Now().Add(refusalLinger))
		_, _ = io.Copy(io.Discard, io.LimitReader(nc, 64<<10))
	}()
}

// refuseUpgrade answers a refused WebSocket upgrade before hijacking: 429
// with Retry-After for the rate, 503 for the connection caps.
func refuseUpgrade(w http.ResponseWriter, r refusal) {
	status := http.StatusServiceUnavailable
	if r.limit == limitRate {
		status = http.StatusTooManyRequests
		w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds(r)))
	}
	http.Error(w, r.explain(), status)
}
