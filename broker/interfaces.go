package broker

import "context"

// Transport is the write side of one connection, implemented by the driver
// that owns the socket. The session never writes itself: it queues output
// and wakes the transport.
type Transport interface {
	// Wake says the session has output pending. It must not block; the
	// driver then calls Session.AppendOutput from its writer.
	Wake()
	// Close says the session has ended for reason: the driver flushes what
	// AppendOutput still returns (the last frame, if any) and closes the
	// connection. For a peer that is not reading (slow consumer) or when
	// the server is going away, the driver should not wait long for that
	// flush. It must not block and may be called more than once.
	Close(reason CloseReason)
}

// Credentials are what a CONNECT frame presents.
type Credentials struct {
	Login, Passcode string
	Host            string
	RemoteAddr      string
}

// Authenticator decides whether a CONNECT may proceed. It runs on the
// connection's read loop, so it should answer quickly; ctx carries the
// connect deadline.
type Authenticator interface {
	// Authenticate returns the principal name for the session, or an error
	// whose text is safe to show the client.
	Authenticate(ctx context.Context, c Credentials) (principal string, err error)
}

// AllowAll is the default Authenticator: every client is accepted under its
// login name (or "anonymous").
type AllowAll struct{}

// Authenticate accepts c.
func (AllowAll) Authenticate(_ context.Context, c Credentials) (string, error) {
	if c.Login == "" {
		return "anonymous", nil
	}
	return c.Login, nil
}

// Journal is what the broker needs from durable storage for persistent
// messages (persistent:true to a queue or a durable subscription). Until a
// journal is configured the broker keeps everything in memory; package
// persistence implements it.
type Journal interface {
	// Append records that msg is in the named queue; it returns once the
	// record is on stable storage, so a RECEIPT sent after it means on disk.
	Append(ctx context.Context, queue string, msg *Message) error
	// Remove records that the message left the queue (acknowledged,
	// expired or dead-lettered).
	Remove(ctx context.Context, queue string, messageID string) error
}
