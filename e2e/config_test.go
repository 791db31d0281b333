//go:build e2e

package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// runTimeout bounds a run of the binary that is expected to exit by itself
// (-print-config, a rejected configuration).
const runTimeout = 10 * time.Second

// childEnv is the test's environment without any STOMPBOX_* variable (so
// that only what a test sets reaches the broker), plus gorace as GORACE and
// env.
func childEnv(gorace string, env ...string) []string {
	var out []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "STOMPBOX_") {
			out = append(out, kv)
		}
	}
	return append(append(out, "GORACE="+gorace), env...)
}

// runStompbox runs the binary with args and env (see childEnv) until it
// exits, bounded by runTimeout, and returns its output and exit status.
func runStompbox(t *testing.T, env []string, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	// Every run needs some authentication configured; anonymous is the
	// one that needs no files.
	args = append([]string{"-auth-anonymous"}, args...)
	cmd := exec.CommandContext(ctx, stompboxBinary(t), args...)
	cmd.SysProcAttr = childProcAttr()
	// A one-shot run has no goroutines left to report races from at exit.
	cmd.Env = childEnv("halt_on_error=0 exitcode=66 atexit_sleep_ms=0", env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("stompbox %q did not exit within %v (killed):\nstdout:\n%s\nstderr:\n%s", args, runTimeout, out.String(), errOut.String())
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		status = exit.ExitCode()
	default:
		t.Fatalf("stompbox %q: %v", args, err)
	}
	return out.String(), errOut.String(), status
}

// jsonLog is a broker's stderr in the JSON log format: it keeps it in a
// brokerLog (so the brokerProc helpers work) and hands over the listening
// line's record once.
type jsonLog struct {
	*brokerLog
	scan      lineScanner
	listening chan map[string]any // buffered 1; written once
}

func newJSONLog() *jsonLog {
	l := &jsonLog{brokerLog: newBrokerLog(), listening: make(chan map[string]any, 1)}
	l.scan.match = func(line []byte) bool {
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil || rec["msg"] != "stompbox listening" {
			return false
		}
		l.listening <- rec
		return true
	}
	return l
}

func (l *jsonLog) Write(p []byte) (int, error) {
	n, _ := l.brokerLog.Write(p)
	l.scan.feed(p)
	return n, nil
}

// startBrokerJSON is startBroker for a broker that logs JSON (log.format
// json): the same listeners on 127.0.0.1:0 then flags, waiting (bounded)
// for the JSON listening record, which it returns with the process.
func startBrokerJSON(t *testing.T, flags ...string) (*brokerProc, map[string]any) {
	t.Helper()
	log := newJSONLog()
	b := launchBroker(t, log, log.brokerLog, childEnv("halt_on_error=0 exitcode=66"), flags...)
	select {
	case rec := <-log.listening:
		b.addr, _ = rec["stomp"].(string)
		b.httpAddr, _ = rec["http"].(string)
		return b, rec
	case <-b.done:
		t.Fatalf("stompbox exited before listening: %v\n%s", b.waitErr, b.log.String())
	case <-time.After(listenTimeout):
		t.Fatalf("no JSON listening record from stompbox within %v:\n%s", listenTimeout, b.log.String())
	}
	return nil, nil
}

// writeConfig writes a YAML configuration file into a fresh directory.
func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "stompbox.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// rawFrame sends one frame on a fresh raw STOMP connection and returns the
// first frame the broker answers with (bounded).
func rawFrame(t *testing.T, addr, frame string) string {
	t.Helper()
	c, r := connectRaw(t, addr)
	if _, err := io.WriteString(c, frame); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(recvTimeout))
	for range 100 {
		f, err := r.ReadString(0)
		if err != nil {
			t.Fatalf("reading the answer to %.40q: %v (got %q)", frame, err, f)
		}
		if f = strings.TrimLeft(f, "\r\n"); f != "" { // heart-beats
			return f
		}
	}
	t.Fatal("only heart-beats")
	return ""
}

// TestConfigProcessFile: a YAML file given with -config sets the journal,
// JSON logs and a 1 KiB body limit of the real process; the listen
// addresses it disables are turned on again by flags (flag > file).
func TestConfigProcessFile(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal")
	path := writeConfig(t, `# e2e: the listeners are disabled here; startBrokerJSON's flags enable them
listen:
  stomp: ""
  http: ""
  admin: ""
journal:
  dir: `+journal+`
  sync: always
log:
  format: json
  level: info
limits:
  max_body: 1KiB
`)
	b, rec := startBrokerJSON(t, "-config", path)
	for _, k := range []string{"stomp", "http", "admin"} {
		if s, _ := rec[k].(string); !regexp.MustCompile(`^127\.0\.0\.1:\d+$`).MatchString(s) {
			t.Errorf("listening record %s = %v, want 127.0.0.1:<port> from the flag over the file's \"\"", k, rec[k])
		}
	}
	if rec["level"] != "INFO" || rec["config"] != path || rec["websocket_path"] != "/ws" {
		t.Errorf("listening record %v: want level INFO, config %s, websocket_path /ws", rec, path)
	}
	if _, ok := rec["stomp_tls"]; ok {
		t.Errorf("listening record names stomp_tls, which is disabled: %v", rec)
	}
	if st, err := os.Stat(journal); err != nil || !st.IsDir() {
		t.Errorf("journal.dir %s from the file: %v", journal, err)
	}

	// A body of exactly 1 KiB is taken, persistently (journal.dir).
	ok := rawFrame(t, b.addr, "SEND\ndestination:/queue/e2e.config\npersistent:true\nreceipt:r1\ncontent-length:1024\n\n"+
		strings.Repeat("a", 1024)+"\x00")
	if !strings.HasPrefix(ok, "RECEIPT\n") || !strings.Contains(ok, "receipt-id:r1\n") {
		t.Fatalf("SEND of 1024 bytes: got %.300q, want RECEIPT r1", ok)
	}
	// One more byte gets ERROR frame-too-large, not retryable.
	for _, withLength := range []bool{true, false} {
		hdr := "SEND\ndestination:/queue/e2e.config\nreceipt:r2\n"
		if withLength {
			hdr += "content-length:1025\n"
		}
		got := rawFrame(t, b.addr, hdr+"\n"+strings.Repeat("b", 1025)+"\x00")
		if !strings.HasPrefix(got, "ERROR\n") || !containsAll(got, "\nerror-code:frame-too-large\n", "\nretryable:false\n") {
			t.Errorf("SEND of 1025 bytes (content-length %v): got %.400q, want ERROR error-code:frame-too-large retryable:false", withLength, got)
		}
	}
	b.stop()

	entries, err := os.ReadDir(journal)
	if err != nil || len(entries) == 0 {
		t.Errorf("journal %s after a persistent SEND: %d entries, %v", journal, len(entries), err)
	}
	for line := range strings.SplitSeq(strings.TrimSpace(b.log.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON (log.format json from the file): %s", line)
		}
	}
}

// printedLine finds the -print-config line of key (leaf within its section,
// indented) and checks its value and the source comment.
func printedLine(t *testing.T, out, leaf, value, source string) {
	t.Helper()
	re := regexp.MustCompile(`(?m)^  ` + regexp.QuoteMeta(leaf) + `: (.*?)\s+# (.*)$`)
	m := re.FindStringSubmatch(out)
	if m == nil {
		t.Errorf("-print-config has no line for %s:\n%s", leaf, out)
		return
	}
	if m[1] != value || m[2] != source {
		t.Errorf("-print-config: %s: %s # %s, want %s # %s", leaf, m[1], m[2], value, source)
	}
}

// TestConfigProcessPrecedence: -print-config of the real binary shows the
// value and source of each option as file, STOMPBOX_* and flags layer:
// flag > env > file > default. Its output is itself a configuration file
// that loads back to the same values.
func TestConfigProcessPrecedence(t *testing.T) {
	path := writeConfig(t, `limits:
  max_body: 1KiB
  max_headers: 64
log:
  level: warn
`)
	env := []string{"STOMPBOX_MAX_BODY=2KiB", "STOMPBOX_LOG_LEVEL=debug"}
	run := func(env []string, args ...string) string {
		t.Helper()
		out, errOut, status := runStompbox(t, env, args...)
		if status != 0 {
			t.Fatalf("stompbox %q: exit status %d, want 0\n%s", args, status, errOut)
		}
		if strings.Contains(out+errOut, "stompbox listening") {
			t.Fatalf("-print-config started the broker:\n%s%s", out, errOut)
		}
		return out
	}

	all := run(env, "-config", path, "-max-body", "3KiB", "-print-config")
	printedLine(t, all, "max_body", "3KiB", "flag -max-body")
	printedLine(t, all, "level", `"debug"`, "env STOMPBOX_LOG_LEVEL")
	printedLine(t, all, "max_headers", "64", path+":3")
	printedLine(t, all, "sync", `"always"`, "default")

	noFlag := run(env, "-config", path, "-print-config")
	printedLine(t, noFlag, "max_body", "2KiB", "env STOMPBOX_MAX_BODY")
	fileOnly := run(nil, "-config", path, "-print-config")
	printedLine(t, fileOnly, "max_body", "1KiB", path+":2")
	printedLine(t, fileOnly, "level", `"warn"`, path+":5")

	// STOMPBOX_CONFIG names the file when -config does not.
	viaEnv := run([]string{"STOMPBOX_CONFIG=" + path}, "-print-config")
	printedLine(t, viaEnv, "max_headers", "64", path+":3")

	// The printed configuration loads back to the same values.
	printed := writeConfig(t, all)
	again := run(nil, "-config", printed, "-print-config")
	printedLine(t, again, "max_body", "3KiB", printed+":"+lineOf(t, all, "  max_body:"))
	printedLine(t, again, "level", `"debug"`, printed+":"+lineOf(t, all, "  level:"))
}

// lineOf returns the 1-based number, as text, of the line of s starting
// with prefix.
func lineOf(t *testing.T, s, prefix string) string {
	t.Helper()
	for i, line := range strings.Split(s, "\n") {
		if strings.HasPrefix(line, prefix) {
			return strconv.Itoa(i + 1)
		}
	}
	t.Fatalf("no line starting with %q in:\n%s", prefix, s)
	return ""
}

// TestConfigProcessRejects: a configuration with an unknown key and bad
// values is refused at start: exit status 2, every problem on stderr with
// the file and line or the variable it came from, and no listener.
func TestConfigProcessRejects(t *testing.T) {
	path := writeConfig(t, `journal:
  dirr: /nonexistent/journal
limits:
  max_body: 4 megs
`)
	out, errOut, status := runStompbox(t, []string{"STOMPBOX_HEARTBEAT=often"},
		"-listen", "127.0.0.1:0", "-http-listen", "127.0.0.1:0", "-admin-listen", "127.0.0.1:0", "-config", path)
	if status != 2 {
		t.Errorf("exit status %d, want 2", status)
	}
	for _, want := range []string{
		path + ":2: journal.dirr: unknown key (valid here: dir, sync, sync_interval, max_bytes, segment_size, min_free)",
		path + `:4: limits.max_body: invalid size "4 megs"`,
		`env STOMPBOX_HEARTBEAT: heartbeat.interval: invalid duration "often"`,
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	if !strings.HasPrefix(errOut, "stompbox: ") {
		t.Errorf("stderr does not start with \"stompbox: \":\n%s", errOut)
	}
	if strings.Contains(out+errOut, "stompbox listening") || out != "" {
		t.Errorf("a rejected configuration printed to stdout or started listening:\nstdout:\n%s\nstderr:\n%s", out, errOut)
	}
}
