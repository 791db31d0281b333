package auth

import "errors"

// The errors Authenticate returns. Their texts are what the client sees in
// the ERROR frame, so they are short, stable and free of credentials; test
// for them with errors.Is.
var (
	// ErrInvalidCredentials is the one answer to a wrong login or a wrong
	// passcode: telling them apart would reveal which users exist.
	ErrInvalidCredentials = errors.New("invalid login or passcode")
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
