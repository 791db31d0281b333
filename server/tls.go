package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Certificate is a TLS certificate and key read from PEM files. Reload
// reads them again (stompbox does on SIGHUP): each new handshake takes the
// certificate current at that moment, connections already open keep theirs,
// and a failed reload keeps the previous certificate.
type Certificate struct {
	certFile, keyFile string // immutable
	current           atomic.Pointer[tls.Certificate]
	reloads           [2]atomic.Uint64 // successes, failures (Reload only)
}

// LoadCertificate reads a certificate chain and its key.
func LoadCertificate(certFile, keyFile string) (*Certificate, error) {
	c := &Certificate{certFile: certFile, keyFile: keyFile}
	cert, err := c.read()
	if err != nil {
		return nil, err
	}
	c.current.Store(cert)
	return c, nil
}

func (c *Certificate) read() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		return nil, fmt.Errorf("server: TLS certificate %s / key %s: %w", c.certFile, c.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("server: TLS certificate %s: %w", c.certFile, err)
		}
	}
	return &cert, nil
}

// Reload reads the files again. On error the previous certificate stays in
// use.
func (c *Certificate) Reload() error {
	cert, err := c.read()
	if err != nil {
		c.reloads[1].Add(1)
		return err
	}
	c.current.Store(cert)
	c.reloads[0].Add(1)
	return nil
}

// Leaf is the certificate in use.
func (c *Certificate) Leaf() *x509.Certificate { return c.current.Load().Leaf }

// tlsConfig is the listeners' TLS configuration: HTTP/1.1 only, since
// WebSocket upgrades need it.
func (c *Certificate) tlsConfig(minVersion uint16) *tls.Config {
	return &tls.Config{
		MinVersion: max(minVersion, tls.VersionTLS12),
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return c.current.Load(), nil
		},
		NextProtos: []string{"http/1.1"},
	}
}

// errNoCertificate is returned by the TLS Serve methods without Config.Certificate.
var errNoCertificate = errors.New("server: TLS listener without Config.Certificate")

// ServeTLS is Serve for native STOMP over TLS: the handshake runs on the
// connection's read loop, within the connect timeout (after the PROXY
// header, with ProxyProtocolTLS).
func (s *Server) ServeTLS(ln net.Listener) error {
	if s.cfg.Certificate == nil {
		_ = ln.Close()
		return errNoCertificate
	}
	return s.serveNative(ln, s.cfg.Certificate.tlsConfig(s.cfg.TLSMinVersion), s.cfg.ProxyProtocolTLS)
}

// ServeWebTLS is ServeWeb over TLS: HTTPS, and STOMP over secure WebSocket.
func (s *Server) ServeWebTLS(ln net.Listener) error {
	if s.cfg.Certificate == nil {
		_ = ln.Close()
		return errNoCertificate
	}
	return s.serveWeb(ln, s.cfg.Certificate.tlsConfig(s.cfg.TLSMinVersion))
}

// certCollector exposes the certificate's expiry and the reload outcomes.
type certCollector struct {
	c               *Certificate
	expiry, reloads *prometheus.Desc
}

func newCertCollector(c *Certificate) *certCollector {
	return &certCollector{
		c:       c,
		expiry:  prometheus.NewDesc("stompbox_tls_certificate_expiry_timestamp_seconds", "When the TLS certificate in use expires (NotAfter), in seconds since the epoch.", nil, nil),
		reloads: prometheus.NewDesc("stompbox_tls_certificate_reloads_total", "Reloads of the TLS certificate and key (SIGHUP), by result.", []string{"result"}, nil),
	}
}

// Describe implements prometheus.Collector.
func (cc *certCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- cc.expiry
	ch <- cc.reloads
}

// Collect implements prometheus.Collector.
func (cc *certCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(cc.expiry, prometheus.GaugeValue, float64(cc.c.Leaf().NotAfter.Unix()))
	ch <- prometheus.MustNewConstMetric(cc.reloads, prometheus.CounterValue, float64(cc.c.reloads[0].Load()), "success")
	ch <- prometheus.MustNewConstMetric(cc.reloads, prometheus.CounterValue, float64(cc.c.reloads[1].Load()), "failure")
}
