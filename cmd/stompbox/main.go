// Command stompbox runs the STOMP broker with embedded defaults: native
// STOMP over TCP. Flags override the defaults.
//
//	stompbox -listen :61613
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/frames"
	"github.com/stompbox/stompbox/persistence"
	"github.com/stompbox/stompbox/server"
	"github.com/stompbox/stompbox/web"
	"github.com/stompbox/stompbox/wsadapter"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "stompbox:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("stompbox", flag.ContinueOnError)
	listen := fs.String("listen", ":61613", "native STOMP TCP listen address")
	adminListen := fs.String("admin-listen", "127.0.0.1:61680", "admin HTTP address: /metrics, /healthz, /readyz (empty disables)")
	httpListen := fs.String("http-listen", ":61614", "HTTP listen address: STOMP over WebSocket at /ws and the demo page at / (empty disables)")
	origins := fs.String("allowed-origins", "", "comma-separated Origin values browsers may connect from; * allows any; empty allows only same-host pages")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn, error")
	maxBody := fs.Int("max-body", frames.DefaultMaxBody, "largest frame body in bytes")
	maxHeaders := fs.Int("max-headers", frames.DefaultMaxHeaders, "most headers per frame")
	heartbeat := fs.Duration("heartbeat", broker.DefaultHeartBeat, "heart-beat interval the server offers and asks for (0 disables)")
	tolerance := fs.Float64("heartbeat-tolerance", broker.DefaultHeartbeatTolerance, "a client silent for its interval times this is closed")
	connectTimeout := fs.Duration("connect-timeout", broker.DefaultConnectTimeout, "time allowed between accept and CONNECT")
	maxSubs := fs.Int("max-subscriptions", broker.DefaultMaxSubscriptions, "subscriptions per connection")
	maxOutbox := fs.Int("max-outbox-bytes", broker.DefaultMaxOutboxBytes, "bytes queued to one connection before it is a slow consumer")
	maxQueueMessages := fs.Int("max-queue-messages", broker.DefaultMaxQueueMessages, "messages one queue may hold")
	maxQueueBytes := fs.Int("max-queue-bytes", broker.DefaultMaxQueueBytes, "bytes one queue may hold")
	maxRedeliveries := fs.Int("max-redeliveries", broker.DefaultMaxRedeliveries, "redeliveries before a message goes to /queue/DLQ.<name> (-1: never)")
	journalDir := fs.String("journal-dir", "", "directory of the disk journal for persistent messages (empty: in memory only)")
	journalSync := fs.String("journal-sync", "always", "journal sync policy: always (RECEIPT after fsync), interval, never")
	journalSyncInterval := fs.Duration("journal-sync-interval", persistence.DefaultSyncInterval, "fsync period for -journal-sync interval")
	journalMaxBytes := fs.Int64("journal-max-bytes", 0, "disk budget of the journal in bytes; persistent SENDs past it get ERROR limit-exceeded (0: unlimited)")
	shutdownTimeout := fs.Duration("shutdown-timeout", 10*time.Second, "how long shutdown waits for clients to be told and flushed")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("-log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if *heartbeat == 0 {
		*heartbeat = -1 // broker.Config: negative disables, zero means default
	}
	var allowed []string
	for o := range strings.SplitSeq(*origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			allowed = append(allowed, o)
		}
	}
	if !web.Complete() {
		logger.Warn("demo page not built into this binary: run `make web` and rebuild; / explains the same")
	}
	if slices.Contains(allowed, "*") {
		logger.Warn("WebSocket origin check disabled: pages from any site may connect (-allowed-origins=*)")
	}
	var journal *persistence.File
	if *journalDir != "" {
		policy, err := persistence.ParseSyncPolicy(*journalSync)
		if err != nil {
			return fmt.Errorf("-journal-sync: %w", err)
		}
		journal, err = persistence.Open(*journalDir, persistence.Config{
			Sync: policy, SyncInterval: *journalSyncInterval, MaxBytes: *journalMaxBytes, Logger: logger,
		})
		if err != nil {
			return err
		}
		defer func() {
			if err := journal.Close(); err != nil {
				logger.Error("journal close", "err", err)
			}
		}()
	}
	brokerJournal := broker.Journal(nil)
	if journal != nil {
		brokerJournal = journal // a nil *File must not become a non-nil interface
	}
	srv := server.New(server.Config{
		Logger:    logger,
		WebSocket: wsadapter.Config{AllowedOrigins: allowed},
		Page:      web.Handler(),
		Broker: broker.Config{
			Frame:              frames.Limits{MaxBody: *maxBody, MaxHeaders: *maxHeaders},
			HeartBeat:          frames.HeartBeat{Send: *heartbeat, Receive: *heartbeat},
			HeartbeatTolerance: *tolerance,
			ConnectTimeout:     *connectTimeout,
			MaxSubscriptions:   *maxSubs,
			MaxOutboxBytes:     *maxOutbox,
			MaxQueueMessages:   *maxQueueMessages,
			MaxQueueBytes:      *maxQueueBytes,
			MaxRedeliveries:    *maxRedeliveries,
			Journal:            brokerJournal,
		},
	})
	if *adminListen != "" {
		al, err := net.Listen("tcp", *adminListen)
		if err != nil {
			return err
		}
		go func() {
			if err := srv.ServeAdmin(al); !errors.Is(err, server.ErrServerClosed) {
				logger.Error("admin listener failed", "err", err)
			}
		}()
		logger.Info("admin listening", "admin", al.Addr().String())
	}
	if err := srv.Recover(); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 2)
	serving := 1
	go func() { serveErr <- srv.Serve(ln) }()
	attrs := []any{"stomp", ln.Addr().String()}
	if *httpListen != "" {
		hl, err := net.Listen("tcp", *httpListen)
		if err != nil {
			_ = ln.Close()
			return err
		}
		serving++
		go func() { serveErr <- srv.ServeWeb(hl) }()
		attrs = append(attrs, "http", hl.Addr().String(), "websocket_path", "/ws")
	}
	logger.Info("stompbox listening", attrs...)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	select {
	case err := <-serveErr:
		serving--
		_ = srv.Shutdown(context.Background())
		for ; serving > 0; serving-- {
			<-serveErr
		}
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), *shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		logger.Warn("shutdown timed out; remaining connections were closed", "err", err)
	}
	for ; serving > 0; serving-- {
		if err := <-serveErr; !errors.Is(err, server.ErrServerClosed) {
			return err
		}
	}
	return nil
}
