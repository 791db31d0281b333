//go:build !linux

package server

import "net"

// pollConn is the epoll driver's connection; other systems have none, and
// every connection is served by the goroutine pair.
type pollConn struct{ wire }

func (c *pollConn) closeNow() {}
func (c *pollConn) start()    {}

// newPollConn is nil: there is no readiness driver on this system.
func (s *Server) newPollConn(net.Conn, stream) *pollConn { return nil }

// stopPoller has nothing to stop here.
func (s *Server) stopPoller() {}

// poller is the readiness driver; other systems have none.
type poller struct{}
