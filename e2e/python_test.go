//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-stomp/stomp/v3"
)

const (
	// pythonEnv names the interpreter; the default is Debian's, which sees
	// packages installed with apt (python3-stomp), unlike a pyenv python3.
	pythonEnv     = "STOMPBOX_E2E_PYTHON"
	defaultPython = "/usr/bin/python3"
	pythonScript  = "testdata/stomp_py_interop.py"
	// pythonTimeout bounds the whole script; it normally takes a few seconds.
	pythonTimeout = 45 * time.Second
	// successLine is the script's last line when every check passed.
	successLine = "stomp.py interop: all checks passed"
	// heartbeatMs is the broker's -heartbeat, short so the script sees the
	// broker's EOL heart-beats within the test.
	heartbeatMs = 1000
	// crossCount is how many messages each side sends in the go-stomp <->
	// stomp.py exchange; it matches GO2PY_COUNT and PY2GO_COUNT in the script.
	crossCount = 3
	// escapedValue and utf8Body match ESCAPED_VALUE and UTF8_BODY in the
	// script: header escaping and a non-ASCII body across both libraries.
	escapedValue = "colon:back\\slash\nsecond line"
	utf8Body     = "h\u00e9llo w\u00f6rld \u2713"
	recvTimeout  = 5 * time.Second
)

// TestPythonInterop runs stomp.py (Debian's python3-stomp) against a real
// stompbox process: heart-beats, queue with client-individual acks, receipts,
// NACK and requeue on disconnect with redelivered:true, topic pub/sub, an
// ERROR, DISCONNECT with receipt (see the script for each check). Meanwhile a
// go-stomp client exchanges messages with the script in both directions
// through the broker. Finally the broker must exit 0 on SIGTERM while a
// client is still connected, telling it ERROR server-shutdown.
func TestPythonInterop(t *testing.T) {
	python := requirePythonStomp(t)
	b := startBroker(t, "-heartbeat", strconv.Itoa(heartbeatMs)+"ms")
	_, port, err := net.SplitHostPort(b.addr)
	if err != nil {
		t.Fatalf("listening address %q: %v", b.addr, err)
	}

	suffix := strconv.FormatInt(time.Now().UnixNano(), 36)
	go2py, py2go := "/topic/e2e.go2py."+suffix, "/topic/e2e.py2go."+suffix

	// go-stomp's own waits (CONNECTED, RECEIPT) are unbounded; bounded
	// runs each call with a deadline.
	var gc *stomp.Conn
	err = bounded(func() (err error) {
		gc, err = stomp.Dial("tcp", b.addr, stomp.ConnOpt.HeartBeat(0, 0))
		return err
	})
	if err != nil {
		t.Fatalf("go-stomp dial: %v", err)
	}
	gcOpen := true
	defer func() {
		if gcOpen {
			_ = gc.MustDisconnect()
		}
	}()
	sub, err := gc.Subscribe(py2go, stomp.AckAuto)
	if err != nil {
		t.Fatalf("go-stomp subscribe: %v", err)
	}
	// Frames of one connection take effect in order: once this SEND's
	// RECEIPT is back, the SUBSCRIBE above is in place.
	err = bounded(func() error {
		return gc.Send("/topic/e2e.barrier."+suffix, "text/plain", nil, stomp.SendOpt.Receipt)
	})
	if err != nil {
		t.Fatalf("go-stomp barrier send: %v", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), pythonTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, pythonScript,
		"--port", port,
		"--server-heartbeat-ms", strconv.Itoa(heartbeatMs),
		"--go2py-topic", go2py,
		"--py2go-topic", py2go)
	cmd.SysProcAttr = childProcAttr()
	cmd.WaitDelay = 2 * time.Second
	cmd.Env = append(os.Environ(), "PYTHONUNBUFFERED=1", "PYTHONDONTWRITEBYTECODE=1")
	var stderr syncBuffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s %s: %v", python, pythonScript, err)
	}

	// Read the script's stdout line by line: it says READY go2py once it
	// has subscribed, and the go-stomp client publishes then.
	var (
		outMu sync.Mutex
		out   []string
	)
	ready := make(chan struct{})
	linesDone := make(chan struct{})
	go func() {
		defer close(linesDone)
		sc := bufio.NewScanner(stdout)
		readied := false
		for sc.Scan() {
			line := sc.Text()
			outMu.Lock()
			out = append(out, line)
			outMu.Unlock()
			if line == "READY go2py" && !readied {
				readied = true
				close(ready)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	output := func() string {
		outMu.Lock()
		defer outMu.Unlock()
		return strings.Join(out, "\n") + "\n--- stderr ---\n" + stderr.String()
	}

	var goErrs []string
	select {
	case <-ready:
		for i := 1; i <= crossCount; i++ {
			err := bounded(func() error {
				return gc.Send(go2py, "text/plain", []byte(fmt.Sprintf("from-go-%d %s", i, utf8Body)),
					stomp.SendOpt.Receipt,
					stomp.SendOpt.Header("x-client", "go-stomp"),
					stomp.SendOpt.Header("x-escaped", escapedValue))
			})
			if err != nil {
				goErrs = append(goErrs, fmt.Sprintf("go-stomp send %d to %s: %v", i, go2py, err))
				break
			}
		}
	case <-linesDone:
		goErrs = append(goErrs, "the script ended before it was READY for go-stomp's messages")
	}
	<-linesDone
	waitErr := cmd.Wait()
	if ctx.Err() != nil {
		t.Errorf("stomp.py script killed after %v", pythonTimeout)
	}
	if waitErr != nil {
		t.Errorf("stomp.py script: %v", waitErr)
	}
	lines := output()
	if !strings.Contains("\n"+lines, "\n"+successLine+"\n") {
		t.Errorf("stomp.py script did not print %q", successLine)
	}
	for _, e := range goErrs {
		t.Error(e)
	}

	// The script's messages to the go-stomp subscriber (py2go).
py2goLoop:
	for i := 1; i <= crossCount; i++ {
		select {
		case m := <-sub.C:
			want := fmt.Sprintf("from-py-%d %s", i, utf8Body)
			switch {
			case m.Err != nil:
				t.Errorf("go-stomp subscription: %v", m.Err)
				break py2goLoop
			case string(m.Body) != want:
				t.Errorf("py2go message %d: body %q, want %q", i, m.Body, want)
			case m.Destination != py2go || m.ContentType != "text/plain":
				t.Errorf("py2go message %d: destination %q content-type %q", i, m.Destination, m.ContentType)
			case m.Header.Get("x-client") != "stomp.py" || m.Header.Get("x-escaped") != escapedValue:
				t.Errorf("py2go message %d: x-client %q x-escaped %q, want %q %q", i,
					m.Header.Get("x-client"), m.Header.Get("x-escaped"), "stomp.py", escapedValue)
			}
		case <-time.After(recvTimeout):
			t.Errorf("go-stomp got %d of %d messages from stomp.py", i-1, crossCount)
			break py2goLoop
		}
	}
	gcOpen = false
	// No UNSUBSCRIBE: go-stomp v3.1.3's Unsubscribe can wait forever for
	// its RECEIPT while a message sits unread in the subscription's channel
	// (go-stomp issue 122); DISCONNECT releases the subscription anyway.
	if err := bounded(gc.Disconnect); err != nil {
		t.Errorf("go-stomp disconnect: %v", err)
	}
	// Shown with -v, or when the test failed.
	t.Logf("stomp.py output:\n%s", lines)

	// Graceful shutdown of the real process with a client still connected.
	idle, idleR := connectRaw(t, b.addr)
	b.stop()
	if got := readUntilEOF(t, idle, idleR); !strings.Contains(got, "ERROR\n") || !strings.Contains(got, "error-code:server-shutdown\n") {
		t.Errorf("connected client at SIGTERM got %q, want ERROR error-code:server-shutdown", got)
	}
}

// bounded runs fn with a deadline of recvTimeout. On timeout fn's goroutine
// stays blocked until the broker is killed at cleanup, which unblocks it.
func bounded(fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		return err
	case <-time.After(recvTimeout):
		return fmt.Errorf("no answer from the broker within %v", recvTimeout)
	}
}

// requirePythonStomp returns the interpreter and fails the test, saying how
// to fix it, when it cannot import stomp.
func requirePythonStomp(t *testing.T) string {
	t.Helper()
	python := os.Getenv(pythonEnv)
	if python == "" {
		python = defaultPython
	}
	if _, err := os.Stat(pythonScript); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, python, "-c", "import stomp; print(stomp.__version__)").CombinedOutput()
	if err != nil {
		t.Fatalf("%s cannot import stomp (%v): %s\ninstall Debian's python3-stomp (make e2e does) or set %s",
			python, err, out, pythonEnv)
	}
	t.Logf("%s: stomp.py %s", python, strings.TrimSpace(string(out)))
	abs, _ := filepath.Abs(pythonScript)
	t.Logf("script: %s", abs)
	return python
}

// connectRaw opens a STOMP 1.2 connection on a plain socket and reads its
// CONNECTED frame; later reads go through the returned reader.
func connectRaw(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, recvTimeout)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := io.WriteString(c, "CONNECT\naccept-version:1.2\nhost:localhost\nheart-beat:0,0\n\n\x00"); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(recvTimeout))
	r := bufio.NewReader(c)
	frame, err := r.ReadString(0)
	if err != nil || !strings.HasPrefix(frame, "CONNECTED\n") {
		t.Fatalf("raw CONNECT: got %q, %v", frame, err)
	}
	return c, r
}

// readUntilEOF returns what the broker sends until it closes c (bounded).
func readUntilEOF(t *testing.T, c net.Conn, r io.Reader) string {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(exitTimeout))
	b, err := io.ReadAll(r)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Errorf("reading until the broker closes: %v (got %q)", err, b)
	}
	return string(b)
}
