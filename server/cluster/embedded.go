package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embeddedReadyTimeout bounds the wait for the embedded nats-server to
// accept clients. Startup is local work (listeners, JetStream's store
// recovery); a server that is not up by then failed.
const embeddedReadyTimeout = 5 * time.Second

// embeddedReadyStep is how often startEmbedded looks for a failed start.
const embeddedReadyStep = 50 * time.Millisecond

// defaultEmbeddedListen is the embedded server's client address when
// cluster.embedded_nats.listen is empty (the NATS default port, loopback
// only: other hosts reach the node's NATS only when the operator says so).
const defaultEmbeddedListen = "127.0.0.1:4222"

// startEmbedded runs the nats-server cfg.Embedded describes, JetStream on,
// and waits until it accepts clients. cfg has its defaults applied. The
// caller owns the returned server and shuts it down.
func startEmbedded(cfg Config) (*server.Server, error) {
	opts, err := embeddedOptions(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded nats-server: %w", err)
	}
	logger := &natsLogger{log: cfg.Logger.With("component", "nats-server")}
	// Debug and trace stay off: they log every protocol line.
	srv.SetLoggerV2(logger, false, false, false)
	srv.Start()
	// nats-server reports a failed start (port in use, store dir not
	// writable, JetStream refusing the cluster) only through its logger's
	// Fatalf, and then never becomes ready: short waits, checking for that
	// message in between, fail fast with the useful part of the error.
	deadline := time.Now().Add(embeddedReadyTimeout)
	for !srv.ReadyForConnections(embeddedReadyStep) {
		msg := logger.fatal()
		if msg == "" && time.Now().Before(deadline) {
			continue
		}
		srv.Shutdown()
		srv.WaitForShutdown()
		if msg != "" {
			return nil, fmt.Errorf("cluster: embedded nats-server did not start: %s", msg)
		}
		return nil, fmt.Errorf("cluster: embedded nats-server not ready for connections within %s", embeddedReadyTimeout)
	}
	return srv, nil
}

// embeddedOptions translates cfg.Embedded into nats-server options.
func embeddedOptions(cfg Config) (*server.Options, error) {
	e := cfg.Embedded
	listen := e.Listen
	if listen == "" {
		listen = defaultEmbeddedListen
	}
	host, port, err := splitListen(listen)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded_nats.listen: %w", err)
	}
	opts := &server.Options{
		ServerName: cfg.NodeName,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   e.StoreDir,
		// The process owns signals (the broker's graceful shutdown); a
		// nats-server catching SIGTERM would stop NATS under the broker.
		NoSigs:                 true,
		DisableJetStreamBanner: true,
	}
	if e.ClusterListen == "" {
		if len(e.Routes) > 0 {
			return nil, errors.New("cluster: embedded_nats.routes needs embedded_nats.cluster_listen: peers route to that address")
		}
		return opts, nil
	}
	chost, cport, err := splitListen(e.ClusterListen)
	if err != nil {
		return nil, fmt.Errorf("cluster: embedded_nats.cluster_listen: %w", err)
	}
	// JetStream in a NATS cluster needs its peers named up front: without
	// routes nats-server refuses to start JetStream at all.
	if len(e.Routes) == 0 {
		return nil, errors.New("cluster: embedded_nats.cluster_listen needs embedded_nats.routes " +
			"(the peers' nats-route://host:port; listing this node's own address too is fine)")
	}
	routes := server.RoutesFromStr(strings.Join(e.Routes, ","))
	for i, u := range routes {
		if u == nil || u.Host == "" {
			return nil, fmt.Errorf("cluster: embedded_nats.routes: %q is not a route URL (nats-route://host:port)", e.Routes[i])
		}
	}
	opts.Cluster = server.ClusterOpts{Name: cfg.Name, Host: chost, Port: cport}
	opts.Routes = routes
	return opts, nil
}

// splitListen parses a host:port listen address for nats-server. Port 0
// and port -1 both mean "a free port the kernel picks": nats-server itself
// reads 0 as "the default port" (4222 for clients), which is never what a
// 127.0.0.1:0 in a configuration or test means, so 0 becomes
// server.RANDOM_PORT (-1).
func splitListen(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("%q: %w", addr, err)
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < -1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port must be a number from 0 to 65535 (0 or -1: any free port)", addr)
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// natsLogger bridges nats-server's logger into slog. Notices (startup,
// routes coming and going) are Info, warnings Warn, errors and fatals
// Error. nats-server's own logger exits the process on Fatalf; this one
// only remembers the first fatal message, which startEmbedded reports.
type natsLogger struct {
	log *slog.Logger

	mu       sync.Mutex
	firstErr string
}

// fatal returns the first Fatalf message, "" when there was none.
func (l *natsLogger) fatal() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.firstErr
}

// Noticef logs at Info.
func (l *natsLogger) Noticef(format string, v ...any) { l.log.Info(fmt.Sprintf(format, v...)) }

// Warnf logs at Warn.
func (l *natsLogger) Warnf(format string, v ...any) { l.log.Warn(fmt.Sprintf(format, v...)) }

// Errorf logs at Error.
func (l *natsLogger) Errorf(format string, v ...any) { l.log.Error(fmt.Sprintf(format, v...)) }

// Fatalf logs at Error and remembers the first message.
func (l *natsLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.firstErr == "" {
		l.firstErr = msg
	}
	l.mu.Unlock()
	l.log.Error(msg, "fatal", true)
}

// Debugf logs at Debug (nats-server calls it only with debug on).
func (l *natsLogger) Debugf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }

// Tracef logs at Debug (nats-server calls it only with trace on).
func (l *natsLogger) Tracef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
