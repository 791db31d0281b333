//go:build e2e

package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	// buildTimeout bounds `go build` of the broker (a cold -race build on
	// two cores takes a while; a warm one a second).
	buildTimeout = 3 * time.Minute
	// listenTimeout bounds the wait for the "stompbox listening" log line.
	listenTimeout = 10 * time.Second
	// exitTimeout bounds graceful shutdown after SIGTERM.
	exitTimeout = 5 * time.Second
)

// binDir holds the stompbox binary built once for the whole package run.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "stompbox-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	binDir = dir
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

var (
	buildOnce sync.Once
	buildPath string
	buildErr  error
)

// stompboxBinary builds ./cmd/stompbox once per package run and returns its
// path. When the tests run with -race the broker is built with -race too, so
// a data race in the real process under real clients fails the test (the
// race runtime makes the process exit non-zero).
func stompboxBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			buildErr = err
			return
		}
		buildPath = filepath.Join(binDir, "stompbox")
		args := []string{"build", "-o", buildPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		args = append(args, "./cmd/stompbox")
		cmd := exec.Command(goTool(), args...)
		cmd.Dir = root
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			buildErr = err
			return
		}
		timer := time.AfterFunc(buildTimeout, func() { _ = cmd.Process.Kill() })
		err = cmd.Wait()
		timer.Stop()
		if err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildPath
}

// moduleRoot walks up from the working directory (the package directory
// under go test) to the directory holding go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// goTool returns the go command of the toolchain running the test, so the
// broker is built with the same Go; it falls back to "go" on PATH.
func goTool() string {
	//lint:ignore SA1019 test binaries run on the machine that built them
	bin := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(bin); err == nil {
		return bin
	}
	return "go"
}

// syncBuffer is an output sink shared by a child process's copier goroutine
// and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// listeningLine matches the broker's slog text line announcing its
// addresses; httpAttr picks the HTTP one (present with -http-listen):
// level=INFO msg="stompbox listening" stomp=127.0.0.1:40123 http=127.0.0.1:40124 websocket_path=/ws
var (
	listeningLine = regexp.MustCompile(`msg="stompbox listening".* stomp=(\S+)`)
	httpAttr      = regexp.MustCompile(` http=(\S+)`)
	adminAttr     = regexp.MustCompile(` admin=(\S+)`)
)

// listenAddrs are the addresses a broker announced.
type listenAddrs struct {
	stomp string // native STOMP over TCP
	http  string // WebSocket at /ws and the demo page; "" when disabled
	admin string // metrics, probes, the admin API and the console; "" when disabled
}

// lineScanner hands each complete line written to match, until match
// says it found what it was looking for.
type lineScanner struct {
	mu      sync.Mutex
	partial []byte
	done    bool
	match   func(line []byte) bool
}

func (s *lineScanner) feed(p []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return
		}
		line := s.partial[:i]
		s.partial = s.partial[i+1:]
		if s.match(line) {
			s.done, s.partial = true, nil
			return
		}
	}
}

// brokerLog keeps a broker's stderr and reports the listening addresses once.
type brokerLog struct {
	syncBuffer
	scan lineScanner
	addr chan listenAddrs // buffered 1; written once
}

func newBrokerLog() *brokerLog {
	l := &brokerLog{addr: make(chan listenAddrs, 1)}
	l.scan.match = func(line []byte) bool {
		m := listeningLine.FindSubmatch(line)
		if m == nil {
			return false
		}
		a := listenAddrs{stomp: string(m[1])}
		if h := httpAttr.FindSubmatch(line); h != nil {
			a.http = string(h[1])
		}
		if h := adminAttr.FindSubmatch(line); h != nil {
			a.admin = string(h[1])
		}
		l.addr <- a
		return true
	}
	return l
}

func (l *brokerLog) Write(p []byte) (int, error) {
	n, _ := l.syncBuffer.Write(p)
	l.scan.feed(p)
	return n, nil
}

// brokerProc is a stompbox child process.
type brokerProc struct {
	t    *testing.T
	cmd  *exec.Cmd
	log  *brokerLog
	addr string // native STOMP address
	// httpAddr serves STOMP over WebSocket at /ws and the demo page at /;
	// "" when a test disabled it with -http-listen "".
	httpAddr string
	// adminAddr serves /metrics, the admin API and the console; "" when
	// a test disabled it.
	adminAddr string
	done      chan struct{} // closed once Wait returned
	waitErr   error         // valid after done
}

// startBroker runs the stompbox binary with native STOMP and HTTP (WebSocket
// and demo page) both on 127.0.0.1:0, never a fixed port, plus extra flags
// (a later flag wins, so -http-listen "" disables HTTP), and waits (bounded)
// for its listening line. The process is killed at cleanup if a test left it
// running, and its log is shown when the test failed.
func startBroker(t *testing.T, flags ...string) *brokerProc {
	t.Helper()
	log := newBrokerLog()
	b := launchBroker(t, log, log, append(os.Environ(), "GORACE=halt_on_error=0 exitcode=66"), flags...)
	select {
	case a := <-log.addr:
		b.addr, b.httpAddr, b.adminAddr = a.stomp, a.http, a.admin
	case <-b.done:
		t.Fatalf("stompbox exited before listening: %v\n%s", b.waitErr, log.String())
	case <-time.After(listenTimeout):
		t.Fatalf("no listening line from stompbox within %v:\n%s", listenTimeout, log.String())
	}
	return b
}

// launchBroker starts the binary with anonymous access, every listener on
// 127.0.0.1:0 and then flags, writing its output to out (which keeps it in
// log); at cleanup a process still running is killed (an error), and the
// log is shown when the test failed.
func launchBroker(t *testing.T, out io.Writer, log *brokerLog, env []string, flags ...string) *brokerProc {
	t.Helper()
	args := append([]string{"-auth-anonymous", "-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0"}, flags...)
	cmd := exec.Command(stompboxBinary(t), args...)
	cmd.SysProcAttr = childProcAttr()
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start stompbox: %v", err)
	}
	b := &brokerProc{t: t, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		b.waitErr = cmd.Wait()
		close(b.done)
	}()
	t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			t.Errorf("stompbox still running at cleanup; killing it")
			_ = cmd.Process.Kill()
			<-b.done
		}
		if t.Failed() {
			t.Logf("stompbox log:\n%s", log.String())
		}
	})
	return b
}

// stop sends SIGTERM and requires a clean exit (status 0, no data race
// reported) within exitTimeout; otherwise it kills the process and fails.
func (b *brokerProc) stop() {
	t := b.t
	t.Helper()
	if err := b.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	select {
	case <-b.done:
	case <-time.After(exitTimeout):
		_ = b.cmd.Process.Kill()
		<-b.done
		t.Fatalf("stompbox did not exit within %v of SIGTERM", exitTimeout)
	}
	if b.waitErr != nil {
		t.Errorf("stompbox exited with %v after SIGTERM, want status 0", b.waitErr)
	}
	if log := b.log.String(); strings.Contains(log, "WARNING: DATA RACE") {
		t.Errorf("the race detector reported a data race in stompbox")
	}
}
