// Command stompbench is a load generator for stompbox or any STOMP 1.2
// broker, over TCP (stomp://host:port) or WebSocket (ws://host:port/path).
// It checks every message (loss, duplication, reordering) and fails with
// exit status 1 when one breaks the scenario's promise or the broker
// sends an ERROR.
//
//	stompbench -scenario queue -producers 4 -consumers 4 -url stomp://127.0.0.1:61613
//	stompbench -scenario topic -subscribers 100 -url ws://127.0.0.1:61614/ws
//	stompbench -scenario latency -rate 10000 -duration 10s -json
//	stompbench -scenario persistent -window 64
//	stompbench -scenario idle -connections 5000 -broker-pid $(pidof stompbox)
//
// docs/benchmarks.md ("stompbench") shows results and how to get them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is main without the process: flags, the run, its report; it returns
// the exit status (0 ok, 1 the run failed, 2 bad flags).
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := ParseFlags(args, stderr)
	switch {
	case errors.Is(err, flag.ErrHelp):
		return 0
	case err != nil:
		fmt.Fprintln(stderr, "stompbench:", err)
		return 2
	}
	res, runErr := Run(ctx, cfg)
	if cfg.JSON {
		err = res.WriteJSON(stdout)
	} else {
		err = res.WriteTable(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "stompbench:", err)
		return 1
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "stompbench:", runErr)
		return 1
	}
	return 0
}
