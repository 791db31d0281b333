package server

import (
	"errors"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// newRegistry is the server's own metrics registry (never the global one):
// Go runtime and process collectors, then the broker's.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

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
// process is alive) and /readyz (recovered, serving, not shutting down).
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
	})
	return mux
}

// notReady says why the server should not get traffic, or "".
func (s *Server) notReady() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return "shutting down"
	case !s.recovered.Load():
		return "journal not recovered yet"
	case len(s.listeners)+len(s.https) == 0:
		return "no STOMP listener yet"
	}
	return ""
}

// ServeAdmin serves AdminHandler on ln until Shutdown, then returns
// ErrServerClosed.
func (s *Server) ServeAdmin(ln net.Listener) error {
	hs := &http.Server{Handler: s.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ln.Close()
		return ErrServerClosed
	}
	s.admins[hs] = struct{}{}
	s.wg.Add(1)
	s.mu.Unlock()
	defer s.wg.Done()
	if err := hs.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return ErrServerClosed
}
