//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/gobwas/ws"
)

// Helpers of the hostile-client suite (hostile_test.go): raw STOMP frames
// read with deadlines, the bystander connection every case checks, the
// admin endpoint (/metrics, /healthz) and the broker's memory.

const (
	// hostileWait bounds one read of a frame the broker should send now.
	hostileWait = 5 * time.Second
	// hostileCloseWait bounds the wait for the broker to close a connection
	// after its ERROR: the writer closes the write side right after the
	// frame, so EOF follows at once.
	hostileCloseWait = 3 * time.Second
)

// hostileFrame is one frame read from the broker; headers keep the first
// value of a repeated key (STOMP 1.2) and are not unescaped (the values the
// suite looks at need no escaping).
type hostileFrame struct {
	command string
	headers map[string]string
	body    string
}

func (f hostileFrame) String() string {
	return fmt.Sprintf("%s %v %q", f.command, f.headers, f.body)
}

// readHostileFrame reads the next frame within timeout, skipping heart-beat
// EOLs. It relies on the broker's frames having no NUL in their bodies,
// which holds for everything the suite reads (ERROR, RECEIPT, CONNECTED).
func readHostileFrame(c net.Conn, r *bufio.Reader, timeout time.Duration) (hostileFrame, error) {
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	raw, err := r.ReadString(0)
	if err != nil {
		return hostileFrame{}, fmt.Errorf("reading a frame: %w (got %q)", err, raw)
	}
	raw = strings.TrimLeft(strings.TrimSuffix(raw, "\x00"), "\r\n")
	head, body, ok := strings.Cut(raw, "\n\n")
	if !ok {
		return hostileFrame{}, fmt.Errorf("frame without a blank line: %q", raw)
	}
	lines := strings.Split(head, "\n")
	f := hostileFrame{command: strings.TrimSuffix(lines[0], "\r"), headers: map[string]string{}, body: body}
	for _, line := range lines[1:] {
		k, v, _ := strings.Cut(strings.TrimSuffix(line, "\r"), ":")
		if _, dup := f.headers[k]; !dup {
			f.headers[k] = v
		}
	}
	return f, nil
}

// expectHostileError reads the next frame and requires an ERROR with code
// and, unless retryable is "", that retryable header; then it requires the
// broker to close the connection (EOF, or a reset if we were still
// sending) within hostileCloseWait. It returns the ERROR.
func expectHostileError(t *testing.T, c net.Conn, r *bufio.Reader, code, retryable string) hostileFrame {
	t.Helper()
	f, err := readHostileFrame(c, r, hostileWait)
	if err != nil {
		t.Fatalf("want ERROR %s: %v", code, err)
	}
	if f.command != "ERROR" || f.headers["error-code"] != code {
		t.Fatalf("got %v, want ERROR error-code:%s", f, code)
	}
	if retryable != "" && f.headers["retryable"] != retryable {
		t.Errorf("ERROR %s has retryable:%q, want %q", code, f.headers["retryable"], retryable)
	}
	expectHostileClose(t, c, r)
	return f
}

// expectHostileClose requires the broker to close c within
// hostileCloseWait; any bytes before the close are reported.
func expectHostileClose(t *testing.T, c net.Conn, r io.Reader) {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(hostileCloseWait))
	rest, err := io.ReadAll(r)
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		t.Errorf("the broker did not close the connection within %v", hostileCloseWait)
	case err != nil && !errors.Is(err, syscall.ECONNRESET):
		t.Errorf("waiting for the close: %v", err)
	}
	if len(bytes.Trim(rest, "\r\n")) > 0 {
		t.Errorf("bytes after the last frame: %q", rest)
	}
}

// dialHostile opens a plain TCP connection, closed at cleanup.
func dialHostile(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, hostileWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c, bufio.NewReader(c)
}

// connectHostile opens a STOMP 1.2 session asking for heart-beat (the
// CONNECT header's value, e.g. "0,0") and reads its CONNECTED.
func connectHostile(t *testing.T, addr, heartbeat string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, r := dialHostile(t, addr)
	writeHostile(t, c, "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:"+heartbeat+"\n\n\x00")
	if f, err := readHostileFrame(c, r, hostileWait); err != nil || f.command != "CONNECTED" {
		t.Fatalf("CONNECT: got %v, %v", f, err)
	}
	return c, r
}

// writeHostile writes s within hostileWait.
func writeHostile(t *testing.T, c net.Conn, s string) {
	t.Helper()
	_ = c.SetWriteDeadline(time.Now().Add(hostileWait))
	if _, err := io.WriteString(c, s); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// writeHostileAsync writes data from a goroutine, for payloads the broker
// may stop reading halfway (its ERROR then comes while we are still
// writing, and the write ends with a reset). The returned channel yields
// the write's result.
func writeHostileAsync(c net.Conn, data []byte) <-chan error {
	done := make(chan error, 1)
	go func() {
		_ = c.SetWriteDeadline(time.Now().Add(2 * hostileWait))
		_, err := c.Write(data)
		done <- err
	}()
	return done
}

// hostileFlood opens up to attempts connections, each sending CONNECT:
// a CONNECTED means admitted (kept open), an ERROR refused (its code,
// retryable and the close are checked). It stops after stopAfter refusals.
func hostileFlood(t *testing.T, addr string, attempts, stopAfter int) (admitted []net.Conn, refused []hostileFrame) {
	t.Helper()
	for range attempts {
		c, err := net.DialTimeout("tcp", addr, hostileWait)
		if err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		writeHostile(t, c, "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00")
		f, err := readHostileFrame(c, r, hostileWait)
		switch {
		case err == nil && f.command == "CONNECTED":
			admitted = append(admitted, c)
			continue
		case err != nil || f.command != "ERROR" || f.headers["error-code"] != "limit-exceeded" || f.headers["retryable"] != "true":
			_ = c.Close()
			t.Fatalf("connection %d: got %v, %v; want CONNECTED or ERROR limit-exceeded retryable:true", len(admitted)+len(refused)+1, f, err)
		}
		expectHostileClose(t, c, r)
		_ = c.Close()
		if refused = append(refused, f); len(refused) == stopAfter {
			break
		}
	}
	return admitted, refused
}

func closeHostileConns(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

// awaitHostileWrite waits (bounded) for a writeHostileAsync to end; its
// error is expected when the broker stopped reading and closed.
func awaitHostileWrite(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(3 * hostileWait):
		t.Errorf("a write to a closed connection did not end")
	}
}

// hostileBystander is a go-stomp client connected before a case; check
// proves it still sends and receives through the broker afterwards.
type hostileBystander struct {
	conn *stomp.Conn
	sent int // messages published by check
}

// newHostileBystander connects one. It asks for no heart-beats, so the
// broker sends none; go-stomp, though, arms its read timeout from the
// server's offer in CONNECTED (the broker's -heartbeat, 10s by default)
// plus HeartBeatError, ignoring that it asked for none, and would drop a
// bystander idle through a long case. A HeartBeatError of an hour keeps
// that timer out of the way.
func newHostileBystander(t *testing.T, addr string) *hostileBystander {
	t.Helper()
	var c *stomp.Conn
	err := bounded(func() (err error) {
		c, err = stomp.Dial("tcp", addr, stomp.ConnOpt.HeartBeat(0, 0), stomp.ConnOpt.HeartBeatError(time.Hour))
		return err
	})
	if err != nil {
		t.Fatalf("bystander dial: %v", err)
	}
	return &hostileBystander{conn: c}
}

// check publishes one message to a fresh queue and receives it within
// recvTimeout (a queue keeps the message even if the SUBSCRIBE lands
// after the SEND).
func (by *hostileBystander) check(t *testing.T) {
	t.Helper()
	by.sent++
	dest := fmt.Sprintf("/queue/hostile.bystander.%d", by.sent)
	body := fmt.Sprintf("still here %d", by.sent)
	var sub *stomp.Subscription
	if err := bounded(func() (err error) { sub, err = by.conn.Subscribe(dest, stomp.AckAuto); return err }); err != nil {
		t.Fatalf("bystander subscribe: %v", err)
	}
	if err := bounded(func() error {
		return by.conn.Send(dest, "text/plain", []byte(body), stomp.SendOpt.Receipt)
	}); err != nil {
		t.Fatalf("bystander send: %v", err)
	}
	select {
	case m := <-sub.C:
		if m.Err != nil || string(m.Body) != body {
			t.Fatalf("bystander received %q, %v; want %q", m.Body, m.Err, body)
		}
	case <-time.After(recvTimeout):
		t.Fatalf("bystander received nothing within %v", recvTimeout)
	}
	// No UNSUBSCRIBE: go-stomp v3.1.3's Unsubscribe can wait forever for
	// its RECEIPT while a message sits unread in the subscription's channel
	// (go-stomp issue 122); DISCONNECT releases the subscription anyway.
}

// close disconnects, bounded; its error is ignored: check is what says
// whether the bystander was harmed.
func (by *hostileBystander) close() { _ = bounded(by.conn.Disconnect) }

// hostileAdminGet fetches path from the admin listener.
func hostileAdminGet(t *testing.T, admin, path string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// hostileMetric returns the sample of series (a metric name with its labels
// as exposed, e.g. stompbox_connections_refused_total{limit="rate"}), or
// fails when it is not exposed.
func hostileMetric(t *testing.T, admin, series string) float64 {
	t.Helper()
	_, text := hostileAdminGet(t, admin, "/metrics")
	for line := range strings.SplitSeq(text, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("no %s in /metrics", series)
	return 0
}

// waitHostileMetric polls series until it equals want, within timeout.
func waitHostileMetric(t *testing.T, admin, series string, want float64, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		got := hostileMetric(t, admin, series)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s = %v after %v, want %v", series, got, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// requireHostileHealthy requires /healthz to answer 200.
func requireHostileHealthy(t *testing.T, admin string) {
	t.Helper()
	if code, body := hostileAdminGet(t, admin, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
}

// hostileProcMemory reads VmRSS and VmHWM (peak RSS) of pid in bytes.
func hostileProcMemory(pid int) (rss, hwm int64, err error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		key, rest, _ := strings.Cut(line, ":")
		fields := strings.Fields(rest)
		if len(fields) != 2 || fields[1] != "kB" {
			continue
		}
		n, _ := strconv.ParseInt(fields[0], 10, 64)
		switch key {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// hostileRSSSampler samples a process's VmRSS every interval until stop.
type hostileRSSSampler struct {
	mu   sync.Mutex
	max  int64
	n    int
	stop chan struct{}
	done chan struct{}
}

func sampleHostileRSS(pid int, interval time.Duration) *hostileRSSSampler {
	s := &hostileRSSSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			if rss, _, err := hostileProcMemory(pid); err == nil {
				s.mu.Lock()
				s.max, s.n = max(s.max, rss), s.n+1
				s.mu.Unlock()
			}
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the largest VmRSS seen and how many
// samples were taken.
func (s *hostileRSSSampler) finish() (int64, int) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.max, s.n
}

// hostileWSStatus tries a STOMP WebSocket upgrade and returns the HTTP status
// of a refusal and its Retry-After header; status 101 means it upgraded
// (the connection is then closed).
func hostileWSStatus(t *testing.T, httpAddr string) (status int, retryAfter string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), hostileWait)
	defer cancel()
	d := ws.Dialer{Protocols: []string{"v12.stomp"}, OnStatusError: func(_ int, _ []byte, resp io.Reader) {
		if r, err := http.ReadResponse(bufio.NewReader(resp), nil); err == nil {
			retryAfter = r.Header.Get("Retry-After")
		}
	}}
	c, _, _, err := d.Dial(ctx, "ws://"+httpAddr+"/ws")
	var se ws.StatusError
	switch {
	case err == nil:
		_ = c.Close()
		return http.StatusSwitchingProtocols, ""
	case errors.As(err, &se):
		return int(se), retryAfter
	}
	t.Fatalf("WebSocket dial: %v", err)
	return 0, ""
}

// hostileTinyRcvBuf is a net.Dialer Control that shrinks SO_RCVBUF before
// connect, so the window the peer sees stays small.
func hostileTinyRcvBuf(_, _ string, rc syscall.RawConn) error {
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	}); err != nil {
		return err
	}
	return serr
}

// hostileMiB formats bytes as MiB.
func hostileMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }
