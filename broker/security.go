package broker

import (
	"context"
	"errors"
	"time"
)

// Credentials are what a client presents: the CONNECT frame's login and
// passcode, or a token taken from the WebSocket upgrade request.
type Credentials struct {
	Login, Passcode string
	// Host is the CONNECT host header: the virtual host asked for.
	Host string
	// RemoteAddr is the peer's address ("ip:port").
	RemoteAddr string
	// FromUpgrade is set when Passcode is a token from the WebSocket
	// upgrade request (query parameter or cookie), checked before the
	// connection is upgraded.
	FromUpgrade bool
}

// Principal is an authenticated client: who it is, and what its
// credentials themselves grant (a JWT's claims). The Authorizer decides
// with it; the broker never changes one, but re-authorization
// (Session.RequestReauthorize) may replace a session's with the one a
// PrincipalChecker returns.
type Principal struct {
	// Name identifies the client in logs, ACL rules and metrics-free
	// places; never a secret.
	Name string
	// Roles are what ACL rules may name besides the user.
	Roles []string
	// Publish and Subscribe are destination patterns the credentials
	// grant (topic wildcard syntax, e.g. /topic/chat.#); nil grants
	// nothing beyond the rules.
	Publish, Subscribe []string
	// VHosts limits the virtual hosts the credentials may use; nil: not
	// limited by the credentials.
	VHosts []string
	// Anonymous is set for a client accepted without credentials.
	Anonymous bool
	// Expires is when the credentials stop being valid (a JWT's exp plus
	// the authenticator's leeway): a session still open then is closed
	// with error-code token-expired. Zero: never.
	Expires time.Time
}

// Authenticator decides whether a client may connect. It runs on the
// connection's read loop (or on the upgrade request), so it must answer
// quickly; ctx carries the connect deadline.
type Authenticator interface {
	// Authenticate returns the client's principal, or an error whose text
	// is safe to show the client: it must never contain the credentials.
	// An error wrapping ErrAuthUnavailable means the check itself could
	// not run (a key file unreadable): the client may retry. The broker
	// never modifies the principal, so one may be given to many clients.
	Authenticate(ctx context.Context, c Credentials) (*Principal, error)
}

// PrincipalChecker is implemented by Authenticators that can tell whether
// a principal they accepted earlier still stands after their configuration
// was reloaded (a user removed from a users file, or given other roles).
// Open sessions ask it when they are re-authorized
// (Session.RequestReauthorize).
type PrincipalChecker interface {
	// CheckPrincipal returns p as the current configuration describes it
	// (p itself when nothing changed), or an error, safe to show the
	// client, when it no longer stands.
	CheckPrincipal(p *Principal) (*Principal, error)
}

// ErrAuthUnavailable is wrapped by Authenticate errors that are not the
// client's fault.
var ErrAuthUnavailable = errors.New("broker: authentication unavailable")

// AllowAll is the default Authenticator of an embedded Broker: every client
// is accepted under its login name (or "anonymous"). The stompbox command
// never uses it; it requires an authenticator to be configured.
type AllowAll struct{}

// Authenticate accepts c.
func (AllowAll) Authenticate(_ context.Context, c Credentials) (*Principal, error) {
	if c.Login == "" {
		return &Principal{Name: "anonymous", Anonymous: true}, nil
	}
	return &Principal{Name: c.Login}, nil
}

// Action is what a client wants to do with a destination.
type Action uint8

// The actions an Authorizer is asked about.
const (
	// ActionPublish: SEND to the destination (and so create it).
	ActionPublish Action = iota + 1
	// ActionSubscribe: SUBSCRIBE to the destination or topic pattern.
	ActionSubscribe
)

// String names the action as ACL rules do.
func (a Action) String() string {
	switch a {
	case ActionPublish:
		return "publish"
	case ActionSubscribe:
		return "subscribe"
	}
	return "unknown"
}

// Authorizer decides what an authenticated client may do. It is called on
// the read loop for every CONNECT, SUBSCRIBE and SEND, so it must be fast
// and must not block.
type Authorizer interface {
	// AllowHost reports whether p may use virtual host vhost.
	AllowHost(p *Principal, vhost string) bool
	// Allow reports whether p may perform a on destination in vhost. The
	// destination is as the client wrote it (/topic/chat.room1,
	// /queue/orders, or a SUBSCRIBE pattern such as /topic/chat.#, which
	// must be allowed as a whole). Temporary queues are the session's own
	// and are not asked about.
	Allow(p *Principal, vhost string, a Action, destination string) bool
}

// AllowEverything is the default Authorizer of an embedded Broker.
type AllowEverything struct{}

// AllowHost allows every host.
func (AllowEverything) AllowHost(*Principal, string) bool { return true }

// Allow allows everything.
func (AllowEverything) Allow(*Principal, string, Action, string) bool { return true }

// MatchTopic reports whether the topic name (without /topic/) matches the
// SUBSCRIBE pattern: segments are dot-separated, * matches one segment and
// # zero or more. It is the broker's own routing rule, exported so that
// authorizers can be checked against it.
func MatchTopic(pattern, name string) bool { return topicMatch(pattern, name) }
