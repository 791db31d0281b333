package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/stompbox/stompbox/broker"
	"github.com/stompbox/stompbox/persistence"
	"github.com/stompbox/stompbox/server/cluster"
)

// Options is everything Run assembles a broker from: the server's Config,
// where to listen, the journal, the cluster, and what shutdown and reload
// need. cmd/stompbox builds it from its configuration file, environment
// and flags; tests and embedders build it directly.
type Options struct {
	// Config configures the server and its broker. Run fills in Registry
	// (a new one when nil; the journal and the cluster node register their
	// collectors there too), Broker.Journal (from JournalDir or
	// OpenJournal: it must be nil here, Run owns the journal) and Cluster
	// (from Options.Cluster, when set). Config.Logger is also Run's logger.
	Config Config
	// Listen says which listeners to bind, and where.
	Listen Listen

	// JournalDir is the disk journal's directory, opened with Journal
	// (persistence.Open); "" keeps everything in memory.
	JournalDir string
	// Journal configures the journal in JournalDir. Its Logger defaults to
	// Config.Logger and its Registerer to the server's registry.
	Journal persistence.Config
	// OpenJournal, when set, opens the journal instead of JournalDir (a
	// test's journal that fails, an embedder's own). A nil Journal (an
	// untyped nil, not a nil pointer) means none. Run closes what it
	// returns.
	OpenJournal func(registry prometheus.Registerer) (Journal, error)

	// Cluster, when set, makes this node join a cluster: Run creates the
	// node (cluster.New: it does not wait for NATS; /readyz fails until
	// NATS answers) before the broker, and closes it after the server has
	// shut down. Its Logger defaults to Config.Logger and its Registerer to
	// the server's registry. A node in Config.Cluster instead is the
	// caller's to close.
	Cluster *cluster.Config

	// ShutdownTimeout bounds the graceful shutdown: the server's Shutdown
	// (clients told, receipts finished) and then the cluster node's and
	// the journal's close each get at most this long. Run returns at the
	// latest ExitGrace after it, whatever is still stuck (a journal in
	// fsync). Default DefaultShutdownTimeout.
	ShutdownTimeout time.Duration

	// Reload, when set, triggers a reload on each value it delivers (the
	// channel signal.Notify fills with SIGHUP): Config.Certificate is
	// reread, then every Reloaders file, then every open session is asked
	// to check its rights again (Server.Reauthorize). A reload that fails
	// keeps what was in use.
	Reload <-chan os.Signal
	// Reloaders are the files a reload rereads (users, keys and rules of
	// package server/auth), in order.
	Reloaders []Reloader

	// MemoryReleaseInterval, when positive, is how often Run checks
	// whether the broker has gone quiet after a burst of work (connections
	// opened, a backlog drained) and, if so, collects the garbage it left
	// and returns the memory to the system (runtime/debug.FreeOSMemory).
	// An idle broker allocates nothing, so without this the garbage
	// stays until the next allocation: up to GOGC percent of the live heap.
	MemoryReleaseInterval time.Duration

	// OnListening, when set, is called from Run once per listener bound,
	// in binding order, with its name (the names of Listen's fields:
	// "admin", "stomp", "stomp_tls", "http", "https") and the address
	// the kernel gave it; it must not block.
	OnListening func(name string, addr net.Addr)
	// LogAttrs are added to the "stompbox listening" line (the
	// configuration file, say).
	LogAttrs []any
}

// Listen holds the listeners' addresses ("host:port"; port 0 picks a free
// one); an empty address leaves that listener out. Run binds the admin
// listener first, so that /readyz answers (503) while the journal is
// recovered, and the others once recovery has succeeded, in field order.
type Listen struct {
	// STOMP is native STOMP over TCP (Server.Serve): "stomp".
	STOMP string
	// STOMPTLS is native STOMP over TLS (Server.ServeTLS; needs
	// Config.Certificate): "stomp_tls".
	STOMPTLS string
	// HTTP is STOMP over WebSocket and the page (Server.ServeWeb): "http".
	HTTP string
	// HTTPS is HTTP over TLS (Server.ServeWebTLS; needs
	// Config.Certificate): "https".
	HTTPS string
	// Admin is /metrics, /healthz, /readyz and the admin API
	// (Server.ServeAdmin): "admin".
	Admin string
}

// Journal is what Run needs of a disk journal: the broker's Journal, and
// Failed, the error that broke it for good (persistence.File), or nil.
type Journal interface {
	broker.Journal
	Failed() error
}

// Reloader is a file a reload rereads (auth.Users, auth.JWT, auth.ACL):
// Reload keeps the previous contents when it fails; String names the file
// in the log.
type Reloader interface {
	Reload() error
	String() string
}

const (
	// DefaultShutdownTimeout is Options.ShutdownTimeout's default.
	DefaultShutdownTimeout = 10 * time.Second
	// ExitGrace is how long past the shutdown timeout Run waits for its own
	// teardown (a journal stuck in fsync) before returning anyway.
	ExitGrace = 2 * time.Second
	// JournalCheckInterval is how often Run asks the journal whether it
	// has failed.
	JournalCheckInterval = time.Second
)

// Run assembles a broker from opts and serves until ctx ends, a listener
// fails or the journal fails. In order it opens the journal, joins the
// cluster, builds the server, binds the admin listener, recovers the
// journal, then binds the other listeners. At the end it shuts down in
// order, each step within the shutdown timeout: the server (every client
// told ERROR server-shutdown, in-flight receipts finished), then the
// cluster node (so the acknowledgements made on the way out reach NATS),
// then the journal. It returns nil after ctx ended and the shutdown went
// well, otherwise why it stopped joined with what went wrong on the way
// out. A failed journal is terminal (PostgreSQL's model: after a failed
// fsync what is on disk is unknown): Run shuts down and returns the
// failure, so that a supervisor restarts the process into recovery.
func Run(ctx context.Context, opts Options) error {
	cfg := opts.Config
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	logger := cfg.Logger
	if cfg.Broker.Journal != nil {
		return errors.New("server: Run: Config.Broker.Journal is set; give Options.JournalDir or Options.OpenJournal instead")
	}
	if opts.Cluster != nil && cfg.Cluster != nil {
		return errors.New("server: Run: both Config.Cluster and Options.Cluster are set")
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	timeout := opts.ShutdownTimeout
	if timeout <= 0 {
		timeout = DefaultShutdownTimeout
	}
	journal, err := opts.openJournal(logger, cfg.Registry)
	if err != nil {
		return err
	}
	if journal != nil {
		cfg.Broker.Journal = journal
	}
	node, err := opts.joinCluster(ctx, logger, cfg.Registry)
	if err != nil {
		return closeJournal(journal, err)
	}
	if node != nil {
		cfg.Cluster = node // not a nil *cluster.Node: a non-nil interface
	}
	r := &running{srv: New(cfg), journal: journal, node: node, timeout: timeout, logger: logger}
	return r.serve(ctx, opts)
}

// openJournal opens the journal OpenJournal or JournalDir names; nil
// without one.
func (o *Options) openJournal(logger *slog.Logger, registry prometheus.Registerer) (Journal, error) {
	if o.OpenJournal != nil {
		return o.OpenJournal(registry)
	}
	if o.JournalDir == "" {
		return nil, nil
	}
	jc := o.Journal
	if jc.Logger == nil {
		jc.Logger = logger
	}
	if jc.Registerer == nil {
		jc.Registerer = registry
	}
	f, err := persistence.Open(o.JournalDir, jc)
	if err != nil {
		return nil, err // not f: a nil *File must not become a non-nil interface
	}
	return f, nil
}

// joinCluster creates the node Options.Cluster configures; nil without
// one. It does not wait for NATS: a node started while NATS is down
// connects by itself once it is back, /readyz failing meanwhile.
func (o *Options) joinCluster(ctx context.Context, logger *slog.Logger, registry prometheus.Registerer) (*cluster.Node, error) {
	if o.Cluster == nil {
		return nil, nil
	}
	cc := *o.Cluster
	if cc.Logger == nil {
		cc.Logger = logger.With("component", "cluster")
	}
	if cc.Registerer == nil {
		cc.Registerer = registry
	}
	node, err := cluster.New(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	logger.Info("cluster mode", "cluster", cc.Name, "node", cc.NodeName, "nats", cc.URLs, "embedded_nats", cc.Embedded != nil)
	return node, nil
}

// running is one Run's broker and what its shutdown closes.
type running struct {
	srv     *Server
	journal Journal       // nil without one
	node    *cluster.Node // nil unless Run created it
	timeout time.Duration
	logger  *slog.Logger
}

// serve binds the listeners, recovers, and waits for the end; it always
// shuts down before it returns.
func (r *running) serve(ctx context.Context, opts Options) error {
	ls := &listeners{onListening: opts.OnListening, errs: make(chan error, 5)}
	if opts.Listen.Admin != "" {
		if err := ls.start("admin", opts.Listen.Admin, r.srv.ServeAdmin); err != nil {
			return r.shutdown(ls, err)
		}
	}
	if err := r.srv.Recover(); err != nil {
		return r.shutdown(ls, err)
	}
	for _, l := range []struct {
		name, addr string
		serve      func(net.Listener) error
	}{
		{"stomp", opts.Listen.STOMP, r.srv.Serve},
		{"stomp_tls", opts.Listen.STOMPTLS, r.srv.ServeTLS},
		{"http", opts.Listen.HTTP, r.srv.ServeWeb},
		{"https", opts.Listen.HTTPS, r.srv.ServeWebTLS},
	} {
		if l.addr == "" {
			continue
		}
		if err := ls.start(l.name, l.addr, l.serve); err != nil {
			return r.shutdown(ls, err)
		}
	}
	attrs := append(ls.attrs, "websocket_path", r.srv.cfg.WebSocketPath, "version", r.srv.cfg.Version)
	r.logger.Info("stompbox listening", append(attrs, opts.LogAttrs...)...)

	var journalCheck <-chan time.Time
	if r.journal != nil {
		t := time.NewTicker(JournalCheckInterval)
		defer t.Stop()
		journalCheck = t.C
	}
	var memoryCheck <-chan time.Time
	var releaser *memoryReleaser
	if opts.MemoryReleaseInterval > 0 {
		t := time.NewTicker(opts.MemoryReleaseInterval)
		defer t.Stop()
		memoryCheck, releaser = t.C, newMemoryReleaser()
	}
	for {
		select {
		case <-memoryCheck:
			if releaser.check() {
				r.logger.Debug("quiet after a burst: heap garbage collected and returned to the system")
			}
		case <-journalCheck:
			if err := r.journal.Failed(); err != nil {
				r.logger.Error("journal failed: persistent work is refused (ERROR journal-failed) and /readyz fails; "+
					"shutting down and exiting non-zero so that a restart recovers from the journal", "err", err)
				return r.shutdown(ls, fmt.Errorf("exiting for recovery: %w", err))
			}
		case <-ctx.Done():
			r.logger.Info("shutting down", "deadline", r.timeout.String())
			return r.shutdown(ls, nil)
		case err := <-ls.errs:
			return r.shutdown(ls, err)
		case <-opts.Reload:
			r.reload(opts.Reloaders)
		}
	}
}

// reload rereads the certificate and the reloaders' files, then has every
// open session held to what they now say.
func (r *running) reload(reloaders []Reloader) {
	reloadCertificate(r.srv.cfg.Certificate, r.logger)
	for _, rl := range reloaders {
		if err := rl.Reload(); err != nil {
			r.logger.Error("reload failed; the previous contents stay in use", "file", rl.String(), "err", err)
			continue
		}
		r.logger.Info("reloaded", "file", rl.String())
	}
	// Sessions already open are held to the reloaded files too.
	r.logger.Info("re-authorizing open sessions", "sessions", r.srv.Reauthorize())
}

func reloadCertificate(cert *Certificate, logger *slog.Logger) {
	if cert == nil {
		logger.Info("SIGHUP: no TLS listener, nothing to reload")
		return
	}
	if err := cert.Reload(); err != nil {
		logger.Error("TLS certificate reload failed; the previous certificate stays in use", "err", err)
		return
	}
	leaf := cert.Leaf()
	logger.Info("TLS certificate reloaded", "subject", leaf.Subject.String(), "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
}

// shutdown tells every client (ERROR server-shutdown, WebSocket 1012),
// lets in-flight receipts finish, then closes the cluster node and the
// journal, each within the timeout; cause is returned, joined with what
// went wrong. Past the timeout and ExitGrace it returns without waiting
// for a teardown stuck in the kernel.
func (r *running) shutdown(ls *listeners, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		if err := r.srv.Shutdown(ctx); err != nil {
			r.logger.Warn("shutdown deadline reached; remaining connections were closed", "err", err)
		}
		done <- closeCluster(r.node, r.timeout, closeJournal(r.journal, nil))
	}()
	grace := time.NewTimer(r.timeout + ExitGrace)
	defer grace.Stop()
	select {
	case err := <-done:
		ls.wait() // Shutdown has ended every serving loop: quick
		return errors.Join(cause, err)
	case <-grace.C:
		return errors.Join(cause, fmt.Errorf("shutdown did not finish within %v; exiting anyway", r.timeout+ExitGrace))
	}
}

// closeCluster closes the node, if any, within timeout: after the server
// has shut down, so the acknowledgements its connections made on the way
// out reach NATS.
func closeCluster(node *cluster.Node, timeout time.Duration, cause error) error {
	if node == nil {
		return cause
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := node.Close(ctx); err != nil {
		return errors.Join(cause, fmt.Errorf("cluster close: %w", err))
	}
	return cause
}

func closeJournal(journal Journal, cause error) error {
	if journal == nil {
		return cause
	}
	if err := journal.Close(); err != nil {
		return errors.Join(cause, fmt.Errorf("journal close: %w", err))
	}
	return cause
}

// listeners binds and serves, and collects the first serving error.
type listeners struct {
	onListening func(name string, addr net.Addr) // nil: nobody asked
	attrs       []any                            // name, address: for the log line
	errs        chan error                       // one per listener at most; capacity for all
	wg          sync.WaitGroup                   // one per serving goroutine
}

func (ls *listeners) start(name, addr string, serve func(net.Listener) error) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen.%s: %w", name, err)
	}
	ls.attrs = append(ls.attrs, name, ln.Addr().String())
	if ls.onListening != nil {
		ls.onListening(name, ln.Addr())
	}
	ls.wg.Add(1)
	go func() {
		defer ls.wg.Done()
		if err := serve(ln); !errors.Is(err, ErrServerClosed) {
			ls.errs <- fmt.Errorf("listen.%s %s: %w", name, ln.Addr(), err)
		}
	}()
	return nil
}

// wait returns once every serving goroutine has: after Shutdown, each
// returns as soon as its loop sees the server closed.
func (ls *listeners) wait() { ls.wg.Wait() }
