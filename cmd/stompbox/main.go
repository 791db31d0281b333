// Command stompbox runs the STOMP broker. With no configuration it serves
// native STOMP on :61613, STOMP over WebSocket and the demo page on :61614
// and the admin endpoint on 127.0.0.1:61680; a YAML file (-config), STOMPBOX_*
// variables and flags change that (docs/configuration.md).
//
//	stompbox -config /etc/stompbox/stompbox.yaml
//	stompbox -print-config
//	stompbox passwd -users-file users -user alice -roles admin < password
//	stompbox journal check|dump|repair -journal-dir /var/lib/stompbox/journal
//	stompbox ctl [-admin URL] [-token T] overview|connections|queues|purge ...
//
// SIGTERM or SIGINT shut it down gracefully; SIGHUP reloads the TLS
// certificate.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/stompbox/stompbox/cmd/stompbox/internal/config"
)

// version is set at build time: -ldflags '-X main.version=...' (make build).
var version = "dev"

func main() {
	if len(os.Args) > 1 && os.Args[1] == "passwd" {
		os.Exit(runPasswd(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "journal" {
		os.Exit(runJournal(os.Args[2:], os.Environ(), os.Stdout, os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "ctl" {
		os.Exit(runCtl(os.Args[2:], os.Environ(), os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is main without the process: it returns the exit status.
func run(args, environ []string, stdout, stderr io.Writer) int {
	loaded, err := config.Load(args, environ, os.ReadFile, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "stompbox:", err)
		return 2
	}
	if loaded.PrintConfig {
		if err := loaded.Print(stdout); err != nil {
			fmt.Fprintln(stderr, "stompbox:", err)
			return 1
		}
		return 0
	}
	logger := newLogger(loaded.Config.Log, stderr)
	for _, name := range loaded.UnknownEnv {
		logger.Warn("environment variable names no option; ignored", "variable", name)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	if err := serve(ctx, loaded, logger, hup); err != nil {
		logger.Error("stompbox stopped", "err", err)
		return 1
	}
	return 0
}

// newLogger builds the process logger (validated: level and format are
// known values).
func newLogger(c config.Log, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
