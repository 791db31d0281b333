package auth

import "errors"

// The errors Authenticate returns. Their texts are what the client sees in
// the ERROR frame, so they are short, stable and free of credentials; test
// for them with errors.Is.
var (
	// ErrInvalidCredentials is the one answer to a wrong login or a wrong
	// passcode: telling them apart would reveal which users exist.
	ErrInvalidCredentials = errors.New("invalid login or passcode")
	// ErrAnonymousOnly is the answer to credentials sent to a server that
	// accepts only anonymous clients: "authentication failed" alone would
	// send the client looking for a wrong password.
	ErrAnonymousOnly = errors.New("this server accepts only anonymous clients; no users are configured: connect without login and passcode")
	// ErrUserRemoved is why an open session ends when its user is no
	// longer in the reloaded users file (CheckPrincipal).
	ErrUserRemoved = errors.New("the user no longer exists")
	// ErrTooManyFailures is wrapped by the answer Backoff gives an address
	// that failed to authenticate too often; the error also wraps
	// broker.ErrAuthUnavailable, so the client is told it may retry, and
	// says when.
	ErrTooManyFailures = errors.New("too many failed logins from your address")
	// ErrAuthRequired is the answer to a client that presented nothing
	// where credentials are required.
	ErrAuthRequired = errors.New("authentication required")
	// ErrTokenExpired: the token's exp is past (beyond the leeway).
	ErrTokenExpired = errors.New("token expired")
	// ErrTokenNotValidYet: the token's nbf is in the future (beyond the
	// leeway).
	ErrTokenNotValidYet = errors.New("token not valid yet")
	// ErrWrongAudience: the token's aud does not name this broker.
	ErrWrongAudience = errors.New("wrong audience")
	// ErrInvalidToken covers every other reason to refuse a token (bad
	// signature, wrong issuer, missing claims, malformed): the client
	// cannot fix those itself, and details would help only an attacker.
	ErrInvalidToken = errors.New("invalid token")
)
