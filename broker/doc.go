// Package broker is the stompbox engine: the per-connection STOMP state
// machine (Session), destinations (topics, queues, temporary queues, durable
// subscriptions), delivery with acknowledgement, redelivery and dead-lettering,
// transactions, receipts and heart-beat negotiation.
//
// It does no network or file I/O and starts no goroutines. A driver (package
// server) owns each connection: it feeds the bytes it reads to
// Session.Feed, and when the session's Transport is woken it collects encoded
// output with Session.AppendOutput and writes it:
//
//	b := broker.New(broker.Config{})
//	s := b.NewSession(transport, remoteAddr)
//	// read loop:  err := s.Feed(buf[:n])     (a non-nil error ends reading)
//	// write loop: out, closing := s.AppendOutput(out[:0]) then write out
//	// at the end: s.Release()
//
// Lock order (see docs/locking.md): broker.mu -> destination mutex ->
// subscription mutex -> outbox mutex. Nothing blocks, fsyncs or writes to a
// socket under any of them.
package broker
