package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
	"github.com/stompbox/stompbox/persistence"
	"github.com/stompbox/stompbox/server"
)

// TestRunOptionsMapping: the listen addresses, the journal, the cluster,
// the shutdown timeout, the SIGHUP channel and the files it reloads reach
// server.Run's Options; journal.min_free 0 (off) as the library's negative.
func TestRunOptionsMapping(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if got := runPasswd([]string{"-users-file", users, "-user", "alice", "-cost", "4"},
		strings.NewReader("pw\n"), io.Discard, io.Discard); got != 0 {
		t.Fatalf("passwd: status %d", got)
	}
	c := config.Default()
	c.Listen = config.Listen{STOMP: "127.0.0.1:1", STOMPTLS: "", HTTP: "127.0.0.1:2", HTTPS: "", Admin: "127.0.0.1:3"}
	c.Journal = config.Journal{Dir: "/var/lib/j", Sync: "interval", SyncInterval: config.Duration(50 * time.Millisecond),
		MaxBytes: 1 << 30, SegmentSize: 1 << 20, MinFree: 0}
	c.ShutdownTimeout = config.Duration(7 * time.Second)
	c.Auth.UsersFile = users
	c.Admin.Token, c.Admin.ReadToken = "admin-token-0123456789", "read-token-0123456789"
	hup := make(chan os.Signal, 1)
	opts, err := runOptions(&config.Loaded{Config: c, File: "/etc/stompbox.yaml"}, slog.New(slog.DiscardHandler), hup)
	if err != nil {
		t.Fatal(err)
	}
	if want := (server.Listen{STOMP: "127.0.0.1:1", HTTP: "127.0.0.1:2", Admin: "127.0.0.1:3"}); opts.Listen != want {
		t.Errorf("Listen %+v, want %+v", opts.Listen, want)
	}
	wantJournal := persistence.Config{Sync: persistence.SyncInterval, SyncInterval: 50 * time.Millisecond,
		MaxBytes: 1 << 30, SegmentSize: 1 << 20, MinFree: -1}
	if opts.JournalDir != "/var/lib/j" || opts.Journal != wantJournal || opts.OpenJournal != nil {
		t.Errorf("journal %q %+v (hook set: %v), want /var/lib/j %+v and no hook",
			opts.JournalDir, opts.Journal, opts.OpenJournal != nil, wantJournal)
	}
	if opts.Cluster != nil {
		t.Errorf("Cluster %+v without cluster options, want nil", opts.Cluster)
	}
	if opts.ShutdownTimeout != 7*time.Second || opts.Reload != (<-chan os.Signal)(hup) {
		t.Errorf("shutdown timeout %v, reload channel passed: %v; want 7s, true", opts.ShutdownTimeout, opts.Reload == (<-chan os.Signal)(hup))
	}
	if len(opts.Reloaders) != 1 || opts.Reloaders[0].String() != "users file "+users {
		t.Errorf("Reloaders %v, want the users file", opts.Reloaders)
	}
	if opts.Config.Broker.Authenticator == nil || opts.Config.Broker.Authorizer == nil || opts.Config.Version != version {
		t.Errorf("server config: authenticator %v, authorizer %v, version %q", opts.Config.Broker.Authenticator,
			opts.Config.Broker.Authorizer, opts.Config.Version)
	}
	if opts.Config.AdminToken != c.Admin.Token || opts.Config.AdminReadToken != c.Admin.ReadToken || opts.Config.AdminUsers == nil {
		t.Errorf("admin API: tokens %v %v, users %v; want both tokens and the users file",
			opts.Config.AdminToken == c.Admin.Token, opts.Config.AdminReadToken == c.Admin.ReadToken, opts.Config.AdminUsers)
	}
	if len(opts.LogAttrs) != 2 || opts.LogAttrs[0] != "config" || opts.LogAttrs[1] != "/etc/stompbox.yaml" {
		t.Errorf("LogAttrs %v, want config /etc/stompbox.yaml", opts.LogAttrs)
	}

	// Cluster mode on: the cluster options become Options.Cluster.
	c.Cluster.NATSURL = "nats://127.0.0.1:4222"
	c.Cluster.Name = "east"
	opts, err = runOptions(&config.Loaded{Config: c}, slog.New(slog.DiscardHandler), hup)
	if err != nil {
		t.Fatal(err)
	}
	if opts.Cluster == nil || opts.Cluster.Name != "east" || len(opts.Cluster.URLs) != 1 || opts.Cluster.URLs[0] != "nats://127.0.0.1:4222" {
		t.Errorf("Cluster %+v, want east at nats://127.0.0.1:4222", opts.Cluster)
	}
}
