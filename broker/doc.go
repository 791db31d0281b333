// Package broker is the stompbox engine: the per-connection STOMP state
// machine (Session), destinations (topics, queues, temporary queues, durable
// subscriptions), delivery with acknowledgement, redelivery and dead-lettering,
// transactions, receipts and heart-beat negotiation.
//
// It does no network or file I/O and starts no goroutines. A driver (package
// server) owns each connection and talks to its Session through a narrow
// contract: it feeds the bytes it reads to Session.Feed; it calls
// Session.Tick, which runs what is due and says whether to read and until
// when, again when that time comes or the session Pokes its Transport;
// when the Transport is woken it takes the encoded output with
// Session.Output and writes it. That is all a driver needs, whether it
// parks goroutines on the socket or waits on epoll:
//
//	b := broker.New(broker.Config{})
//	s := b.NewSession(transport, remoteAddr)
//	// reader:  read, at, err := s.Tick(now, lastRead, poked)
//	//          then, when read, err = s.Feed(buf[:n])   (a non-nil error ends reading)
//	// writer:  closing := s.Output(&batch); write the batch; batch.Done()
//	// at the end: s.Release()
//
// Lock order (see docs/locking.md): broker.mu -> destination mutex ->
// subscription mutex -> outbox mutex. Nothing blocks, fsyncs or writes to a
// socket under any of them.
package broker
