// Package wsadapter carries STOMP over WebSocket (RFC 6455) on gobwas/ws:
// the upgrade (subprotocol choice, origin check), reading WebSocket messages
// as one STOMP byte stream (frames read into the caller's buffer and
// unmasked in place, fragments and interleaved control frames handled,
// pings answered), writing each STOMP frame as one WebSocket message, and
// close codes.
//
// It knows nothing of sessions or brokers: a driver reads STOMP bytes with
// Conn.Read, writes encoded frames with Conn.WriteFrames, and ends with
// Conn.Close(code, reason):
//
//	c, proto, err := wsadapter.Upgrade(w, r, wsadapter.Config{MaxMessage: 4 << 20})
//	if err != nil {
//		return // Upgrade has answered the HTTP request
//	}
//	n, err := c.Read(buf)            // STOMP bytes, from one or more WS messages
//	err = c.WriteFrames(out, ends)    // out[ends[i-1]:ends[i]] is one STOMP frame
//	_ = c.Close(wsadapter.CloseNormal, "")
//
// A readiness-driven caller (epoll: no goroutine and no buffer per idle
// connection) does not Read: it calls Detach once, Feeds the bytes the
// upgrade had read ahead, then Feeds whatever each non-blocking read of
// the socket returns, cut anywhere:
//
//	ahead := c.Detach()           // drops the upgrade's bufio.Reader
//	err = c.Feed(ahead, stomp)    // stomp(payload) gets unmasked STOMP bytes
//	n, _ := syscall.Read(fd, buf) // later, when the socket is readable
//	err = c.Feed(buf[:n], stomp)
//
// Read and Feed run the same decoder; its state between chunks is a few
// dozen bytes in the Conn. A control frame whole in a chunk is handled in
// place; one cut in two is gathered in a 125-byte buffer borrowed from
// Config.Buffers (shared by a server's Conns) until it is whole.
//
// A caller with checks of its own to make before the connection is
// hijacked (rate limits, a token) splits Upgrade in two: Negotiate checks
// origin and subprotocols, Handshake.Upgrade answers 101. Refusals are
// *RejectError values saying which check refused.
package wsadapter
