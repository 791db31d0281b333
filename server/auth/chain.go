package auth

import (
	"context"
	"errors"

	"github.com/stompbox/stompbox/broker"
)

// Anonymous accepts clients that present no credentials at all (empty login
// and passcode) as Principal{Name: "anonymous", Anonymous: true}. ACL rules
// select them only with "anonymous: true".
type Anonymous struct{}

// Authenticate accepts c only if it carries neither login nor passcode;
// credentials get ErrAnonymousOnly, which tells the client why.
func (Anonymous) Authenticate(_ context.Context, c broker.Credentials) (*broker.Principal, error) {
	if c.Login != "" || c.Passcode != "" {
		return nil, ErrAnonymousOnly
	}
	return &broker.Principal{Name: "anonymous", Anonymous: true}, nil
}

// chain is what Chain returns; see there.
type chain struct {
	jwt       broker.Authenticator   // nil if none
	logins    []broker.Authenticator // Users and any other, in the order given
	anonymous broker.Authenticator   // nil if none
	// anonymousPrincipal is the one every anonymous client gets: the
	// broker never modifies a principal, and a site of anonymous readers
	// holds many of them (docs/operations.md, "Sizing").
	anonymousPrincipal *broker.Principal
}

// Chain combines authenticators; each client is sent to exactly one kind,
// chosen by the shape of its credentials, in this order:
//
//  1. A passcode that LooksLikeJWT, or any token from the WebSocket upgrade
//     request, goes to the *JWT if one is given; its answer is final.
//  2. Otherwise a non-empty login goes to the login authenticators: every
//     authenticator given that is neither a *JWT nor Anonymous (normally
//     one *Users), tried in order until one accepts. If none accepts the
//     answer is "invalid login or passcode" (or, if one could not run, its
//     error wrapping broker.ErrAuthUnavailable).
//  3. Otherwise empty login and passcode go to Anonymous if given, else
//     "authentication required".
//  4. Anything else (a passcode without a login that is not a token) is
//     "invalid login or passcode".
//
// A chain of Anonymous alone answers any credentials with
// ErrAnonymousOnly instead of ErrInvalidCredentials in 2 and 4: there is
// no password to get wrong.
//
// Nil authenticators (also typed nil pointers) are skipped, so optional
// parts can be passed as they are; a chain of none refuses everyone. Of
// several *JWT or Anonymous, the last one counts.
func Chain(authenticators ...broker.Authenticator) broker.Authenticator {
	c := &chain{}
	for _, a := range authenticators {
		switch v := a.(type) {
		case nil:
		case *JWT:
			if v != nil {
				c.jwt = v
			}
		case *Users:
			if v != nil {
				c.logins = append(c.logins, v)
			}
		case Anonymous, *Anonymous:
			c.anonymous = Anonymous{}
			c.anonymousPrincipal, _ = Anonymous{}.Authenticate(context.Background(), broker.Credentials{})
		default:
			c.logins = append(c.logins, v)
		}
	}
	return c
}

// Authenticate routes c as Chain documents.
func (c *chain) Authenticate(ctx context.Context, cr broker.Credentials) (*broker.Principal, error) {
	switch {
	case c.jwt != nil && (cr.FromUpgrade || LooksLikeJWT(cr.Passcode)):
		return c.jwt.Authenticate(ctx, cr)
	case c.anonymousOnly() && (cr.Login != "" || cr.Passcode != ""):
		return nil, ErrAnonymousOnly
	case cr.Login != "":
		var unavailable error
		for _, a := range c.logins {
			p, err := a.Authenticate(ctx, cr)
			if err == nil {
				return p, nil
			}
			if errors.Is(err, broker.ErrAuthUnavailable) && unavailable == nil {
				unavailable = err
			}
		}
		if unavailable != nil {
			return nil, unavailable
		}
		return nil, ErrInvalidCredentials
	case cr.Passcode == "":
		if c.anonymous != nil {
			return c.anonymousPrincipal, nil
		}
		return nil, ErrAuthRequired
	}
	return nil, ErrInvalidCredentials
}

// anonymousOnly reports a chain that accepts anonymous clients and nothing
// else.
func (c *chain) anonymousOnly() bool {
	return c.anonymous != nil && c.jwt == nil && len(c.logins) == 0
}

// CheckPrincipal implements broker.PrincipalChecker for the principals the
// chain accepted: anonymous ones and those with an expiry (tokens, whose
// claims cannot change and whose expiry the session enforces) stand as
// they are; a login principal is asked of the login authenticators that
// are PrincipalCheckers, and stands unchanged when one of the login
// authenticators cannot say. ErrUserRemoved when none knows it any more.
func (c *chain) CheckPrincipal(p *broker.Principal) (*broker.Principal, error) {
	if p.Anonymous || !p.Expires.IsZero() {
		return p, nil
	}
	var err error = ErrUserRemoved
	for _, a := range c.logins {
		pc, ok := a.(broker.PrincipalChecker)
		if !ok {
			err = nil // it may have accepted p; nothing says otherwise
			continue
		}
		if np, cerr := pc.CheckPrincipal(p); cerr == nil {
			return np, nil
		}
	}
	if err != nil {
		return nil, err
	}
	return p, nil
}

var _ broker.PrincipalChecker = (*chain)(nil)
