package server

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/stompbox/stompbox/web"
)

// Recover replays the broker's journal (if any) and marks the server
// ready: /readyz answers 503 until it has returned nil.
func (s *Server) Recover() error {
	if err := s.broker.Recover(); err != nil {
		return err
	}
	s.recovered.Store(true)
	return nil
}

// AdminHandler serves /metrics (the server's registry), /healthz (the
// process is alive), /readyz (recovered, serving, not shutting down,
// journal not failed) and the admin API under /api/ (adminapi.go).
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := s.notReady(); reason != "" {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte("ready\n"))
		// Damage recovery read around does not make the node unready
		// (everything good was recovered), but the probe says so.
		if dj, ok := s.cfg.Broker.Journal.(damagedJournal); ok {
			if d := dj.Damage(); d != "" {
				_, _ = w.Write([]byte(d + "\n"))
			}
		}
	})
	mux.Handle(web.ConsolePrefix, s.admin.guard(roleRead, web.ConsoleHandler().ServeHTTP)) // the operator's console (issue 16), as /api/ is guarded
	if s.cfg.EnablePprof {
		// Mounted explicitly: importing net/http/pprof also registers on
		// http.DefaultServeMux, which nothing here serves.
		// Behind the admin API's guard: /cmdline shows the flags (an
		// -admin-token among them) and profiles cost CPU. Role admin once
		// credentials are configured; without any, loopback clients, as
		// before there was an API.
		need := roleRead
		if s.admin.auth.configured() {
			need = roleAdmin
		}
		mux.Handle("/debug/pprof/", s.admin.guard(need, pprof.Index))
		mux.Handle("/debug/pprof/cmdline", s.admin.guard(need, pprof.Cmdline))
		mux.Handle("/debug/pprof/profile", s.admin.guard(need, pprof.Profile))
		mux.Handle("/debug/pprof/symbol", s.admin.guard(need, pprof.Symbol))
		mux.Handle("/debug/pprof/trace", s.admin.guard(need, pprof.Trace))
	}
	s.admin.mount(mux)
	return mux
}

// failingJournal is a journal that can break for good (persistence.File:
// a failed write or fsync); Failed returns why, or nil.
type failingJournal interface {
	Failed() error
}

// damagedJournal is a journal whose recovery may have read around damage
// (persistence.File); Damage describes it, or is "".
type damagedJournal interface {
	Damage() string
}

// clusterReadyTimeout bounds how long /readyz waits for the cluster's
// answer (it caches it, so most probes do not wait at all).
const clusterReadyTimeout = 2 * time.Second

// notReady says why the server should not get traffic, or "".
func (s *Server) notReady() string {
	// Asked before taking mu: the journal takes its own lock.
	if fj, ok := s.cfg.Broker.Journal.(failingJournal); ok {
		if err := fj.Failed(); err != nil {
			return "journal failed (restart to recover): " + err.Error()
		}
	}
	if c := s.cfg.Cluster; c != nil {
		ctx, cancel := context.WithTimeout(context.Background(), clusterReadyTimeout)
		err := c.Ready(ctx)
		cancel()
		if err != nil {
			return "cluster not reachable: " + err.Error()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return "shutting down"
	case !s.recovered.Load():
		return "journal not recovered yet"
	case len(s.listeners) == 0 && !slices.Contains(slices.Collect(maps.Values(s.https)), true):
		return "no STOMP listener yet"
	}
	return ""
}

// ServeAdmin serves AdminHandler on ln until Shutdown, then returns
// ErrServerClosed. It has the HTTP timeouts and header bound of every
// listener (a scrape reads one small request, so HTTPReadTimeout does not
// limit it; responses are not timed), but not the admission limits:
// metrics and probes must answer most when the broker is full. Keep it on
// a private address.
func (s *Server) ServeAdmin(ln net.Listener) error {
	return s.serveHTTP(ln, s.AdminHandler(), false, nil)
}
