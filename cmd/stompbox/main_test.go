package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
)

func TestRunExitStatus(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		env        []string
		status     int
		wantStdout string
		wantStderr string
	}{
		{"print config", []string{"-print-config", "-max-body", "1MiB"}, []string{"STOMPBOX_LOG_LEVEL=warn", "STOMPBOX_AUTH_ANONYMOUS=true"}, 0, "  max_body: 1MiB", ""},
		{"no authentication", []string{"-print-config"}, nil, 2, "", "auth: no authentication configured"},
		{"help", []string{"-h"}, nil, 0, "", "-journal-dir"},
		{"bad flag value", []string{"-auth-anonymous", "-listen", "nowhere"}, nil, 2, "", `stompbox: flag -listen: listen.stomp: invalid address "nowhere"`},
		{"unknown flag", []string{"-nope"}, nil, 2, "", "flag provided but not defined: -nope"},
		{"missing file", []string{"-config", filepath.Join(t.TempDir(), "none.yaml")}, nil, 2, "", "config file:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if got := run(tt.args, tt.env, &stdout, &stderr); got != tt.status {
				t.Fatalf("status %d, want %d; stderr:\n%s", got, tt.status, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.wantStdout) || !strings.Contains(stderr.String(), tt.wantStderr) {
				t.Errorf("stdout %q\nstderr %q\nwant %q / %q", stdout.String(), stderr.String(), tt.wantStdout, tt.wantStderr)
			}
		})
	}
}

// TestServerConfigMapping: every option reaches the package that uses it.
func TestServerConfigMapping(t *testing.T) {
	c := config.Default()
	c.Limits.MaxBody = 1000
	c.Limits.MaxHeaders = 11
	c.Limits.MaxHeaderBytes = 2000
	c.Limits.MaxHeaderLine = 300
	c.Limits.MaxSubscriptions = 12
	c.Limits.MaxOutboxBytes = 13
	c.Limits.MaxConnectionBytes = 21
	c.Limits.MaxIDLength = 22
	c.Limits.FullPolicy = "error"
	c.Limits.BlockTimeout = config.Duration(6 * time.Second)
	c.Limits.MaxQueueMessages = 14
	c.Limits.MaxQueueBytes = 15
	c.Limits.MaxQueues = 16
	c.Limits.MaxTotalQueuedBytes = 17
	c.Limits.MaxTopicUnacked = 18
	c.Limits.MaxRedeliveries = -1
	c.Limits.MaxTransactions = 19
	c.Limits.MaxTransactionFrames = 20
	c.Limits.ConnectTimeout = config.Duration(3 * time.Second)
	c.Heartbeat.Interval = 0
	c.Heartbeat.Tolerance = 3
	c.WebSocket.Path = "/stomp"
	c.WebSocket.AllowedOrigins = []string{"https://a.example"}
	c.TLS.MinVersion = "1.3"
	c.Admin.Pprof = true
	c.Admin.DestinationMetrics = 7
	c.Conn.WriteTimeout = config.Duration(4 * time.Second)
	c.Conn.Linger = config.Duration(5 * time.Second)
	c.Conn.ReadBufferSize = 8192
	sc := serverConfig(c, slog.New(slog.DiscardHandler), nil)
	b := sc.Broker
	got := []any{b.Frame.MaxBody, b.Frame.MaxHeaders, b.Frame.MaxHeaderBytes, b.Frame.MaxHeaderLine,
		b.MaxSubscriptions, b.MaxOutboxBytes, b.MaxQueueMessages, b.MaxQueueBytes, b.MaxQueues,
		b.MaxTotalQueuedBytes, b.MaxTopicUnacked, b.MaxRedeliveries, b.MaxTransactions, b.MaxTransactionFrames,
		b.ConnectTimeout, b.HeartBeat.Send, b.HeartBeat.Receive, b.HeartbeatTolerance, b.DestinationMetrics,
		sc.WebSocketPath, sc.WebSocket.AllowedOrigins[0], sc.TLSMinVersion, sc.EnablePprof,
		sc.WriteTimeout, sc.Linger, sc.ReadBufferSize, b.Journal == nil, b.ServerName, b.MaxConnectionBytes, b.FullPolicy, b.BlockTimeout, b.MaxIDLength}
	want := []any{1000, 11, 2000, 300, 12, 13, 14, 15, 16, 17, 18, -1, 19, 20,
		3 * time.Second, time.Duration(-1), time.Duration(-1), 3.0, 7,
		"/stomp", "https://a.example", uint16(tls.VersionTLS13), true,
		4 * time.Second, 5 * time.Second, 8192, true, "stompbox/" + version, 21, broker.FullError, 6 * time.Second, 22}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("field %d: got %v (%T), want %v (%T)", i, got[i], got[i], want[i], want[i])
		}
	}
}

// TestServeUntilCancelled: serve binds every listener from the
// configuration, announces them, and returns nil once its context ends.
func TestServeUntilCancelled(t *testing.T) {
	c := config.Default()
	c.Listen = config.Listen{STOMP: "127.0.0.1:0", HTTP: "127.0.0.1:0", Admin: "127.0.0.1:0"}
	c.Journal.Dir = t.TempDir()
	c.Auth.Anonymous = true
	c.ShutdownTimeout = config.Duration(5 * time.Second)
	var logs syncWriter
	logger := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	hup := make(chan os.Signal, 1)
	go func() { done <- serve(ctx, &config.Loaded{Config: c}, logger, hup) }()
	listening := regexp.MustCompile(`msg="stompbox listening" admin=127\.0\.0\.1:\d+ stomp=127\.0\.0\.1:\d+ http=127\.0\.0\.1:\d+`)
	for i := 0; i < 500 && !listening.MatchString(logs.String()); i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if !listening.MatchString(logs.String()) {
		t.Fatalf("no listening line:\n%s", logs.String())
	}
	hup <- os.Interrupt // any value: SIGHUP without TLS only logs
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not return after its context ended")
	}
	// The journal was opened (a segment file exists) and the server says
	// what it bound to.
	if entries, err := os.ReadDir(c.Journal.Dir); err != nil || len(entries) == 0 {
		t.Fatalf("journal directory after serve: %v entries, %v; want the journal's segment", len(entries), err)
	}
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestPasswd(t *testing.T) {
	file := filepath.Join(t.TempDir(), "users")
	var stdout, stderr bytes.Buffer
	if got := runPasswd([]string{"-users-file", file, "-user", "alice", "-roles", "admin, ops", "-cost", "4"},
		strings.NewReader("s3cret pass\n"), &stdout, &stderr); got != 0 {
		t.Fatalf("status %d: %s", got, stderr.String())
	}
	info, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm() != 0o600 {
		t.Errorf("users file mode %v, want 0600", info.Mode().Perm())
	}
	data, _ := os.ReadFile(file)
	if !strings.HasPrefix(string(data), "alice:$2") || !strings.HasSuffix(strings.TrimSpace(string(data)), ":admin,ops") || strings.Contains(string(data), "s3cret") {
		t.Fatalf("users file %q", data)
	}
	for _, tt := range []struct {
		name  string
		args  []string
		stdin string
	}{
		{"no password", []string{"-users-file", file, "-user", "bob"}, ""},
		{"no user", []string{"-users-file", file}, "pw\n"},
		{"no file", []string{"-user", "bob"}, "pw\n"},
	} {
		stderr.Reset()
		if got := runPasswd(tt.args, strings.NewReader(tt.stdin), io.Discard, &stderr); got != 2 {
			t.Errorf("%s: status %d, want 2 (%s)", tt.name, got, stderr.String())
		}
	}
}
