package auth

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stompbox/stompbox/broker"
)

// Defaults of JWTConfig.
const (
	DefaultLeeway         = 30 * time.Second
	DefaultUserClaim      = "sub"
	DefaultRolesClaim     = "roles"
	DefaultPublishClaim   = "publish"
	DefaultSubscribeClaim = "subscribe"
	DefaultVHostsClaim    = "vhosts"
)

// minSecretLen is RFC 7518's minimum for HS256: a key as long as the hash.
const minSecretLen = 32

// maxTokenLen bounds the work a client can ask for before the signature is
// checked (the claims are decoded first); real tokens are a few KiB.
const maxTokenLen = 16 << 10

// JWTConfig configures a JWT authenticator. At least one of Secret and
// KeysFile is required; with both, HS256 tokens are checked against the
// secret and RS/ES tokens against the keys, never crosswise.
type JWTConfig struct {
	// Secret is the HS256 shared secret (at least 32 bytes), as read from a
	// file by the caller. It is copied; it never appears in errors or in
	// String output.
	Secret []byte
	// KeysFile is a file of public keys: PEM (one or more PUBLIC KEY, RSA
	// PUBLIC KEY or CERTIFICATE blocks) or a JWKS document. RSA keys verify
	// RS256/RS384/RS512, EC P-256 keys ES256, EC P-384 keys ES384. Reload
	// rereads it.
	KeysFile string
	// Audience, when set, must be one of the token's aud values.
	Audience string
	// Issuer, when set, must be the token's iss.
	Issuer string
	// Leeway is the clock skew allowed on exp and nbf. 0: DefaultLeeway;
	// negative: none.
	Leeway time.Duration
	// Claim names; empty: the Default*Claim above. The user claim must be
	// a non-empty string; the others are arrays of strings (a single string
	// counts as a one-element array).
	UserClaim, RolesClaim, PublishClaim, SubscribeClaim, VHostsClaim string

	// now replaces the clock in tests; nil: time.Now.
	now func() time.Time
}

// String describes the configuration without the secret.
func (c JWTConfig) String() string {
	var parts []string
	if len(c.Secret) > 0 {
		parts = append(parts, "HS256 secret")
	}
	if c.KeysFile != "" {
		parts = append(parts, "keys file "+c.KeysFile)
	}
	if c.Audience != "" {
		parts = append(parts, "audience "+c.Audience)
	}
	if c.Issuer != "" {
		parts = append(parts, "issuer "+c.Issuer)
	}
	return "JWT(" + strings.Join(parts, ", ") + ")"
}

// GoString keeps %#v from printing the secret's bytes.
func (c JWTConfig) GoString() string { return c.String() }

// JWT authenticates clients by a signed JSON Web Token, given as the
// CONNECT passcode (the login is ignored) or on the WebSocket upgrade
// request. Tokens must carry exp; nbf is enforced when present; alg none
// is refused, and each key verifies only the algorithms of its own type.
// Safe for concurrent use.
type JWT struct {
	cfg JWTConfig // immutable, defaults applied

	state    atomic.Pointer[jwtState]
	reloadMu sync.Mutex // serializes Reload
}

// jwtState is one generation of the keys, with the parser that accepts
// exactly their algorithms. Immutable.
type jwtState struct {
	keys   *keySet // nil without a keys file
	secret []byte  // nil without a secret
	parser *jwt.Parser
}

// NewJWT checks cfg and reads its keys file.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	if len(cfg.Secret) == 0 && cfg.KeysFile == "" {
		return nil, errors.New("jwt: need an HS256 secret or a keys file")
	}
	if len(cfg.Secret) > 0 && len(cfg.Secret) < minSecretLen {
		return nil, fmt.Errorf("jwt: HS256 secret shorter than %d bytes", minSecretLen)
	}
	cfg.Secret = append([]byte(nil), cfg.Secret...)
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultLeeway
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	setDefault(&cfg.UserClaim, DefaultUserClaim)
	setDefault(&cfg.RolesClaim, DefaultRolesClaim)
	setDefault(&cfg.PublishClaim, DefaultPublishClaim)
	setDefault(&cfg.SubscribeClaim, DefaultSubscribeClaim)
	setDefault(&cfg.VHostsClaim, DefaultVHostsClaim)
	j := &JWT{cfg: cfg}
	st, err := j.load()
	if err != nil {
		return nil, err
	}
	j.state.Store(st)
	return j, nil
}

func setDefault(s *string, def string) {
	if *s == "" {
		*s = def
	}
}

// Reload rereads the keys file (a no-op without one). On error the keys
// loaded before stay in force.
func (j *JWT) Reload() error {
	if j.cfg.KeysFile == "" {
		return nil
	}
	j.reloadMu.Lock()
	defer j.reloadMu.Unlock()
	st, err := j.load()
	if err != nil {
		return err
	}
	j.state.Store(st)
	return nil
}

// String describes the authenticator without its secret.
func (j *JWT) String() string { return j.cfg.String() }

// GoString keeps %#v from printing the secret's bytes.
func (j *JWT) GoString() string { return j.cfg.String() }

func (j *JWT) load() (*jwtState, error) {
	st := &jwtState{}
	var algs []string
	if len(j.cfg.Secret) > 0 {
		st.secret = j.cfg.Secret
		algs = append(algs, "HS256")
	}
	if j.cfg.KeysFile != "" {
		data, err := os.ReadFile(j.cfg.KeysFile)
		if err != nil {
			return nil, fmt.Errorf("jwt: %w", err)
		}
		if st.keys, err = parseKeys(j.cfg.KeysFile, data); err != nil {
			return nil, fmt.Errorf("jwt: %w", err)
		}
		algs = append(algs, st.keys.algs()...)
	}
	opts := []jwt.ParserOption{
		// The allow-list is the first defence against alg none and
		// algorithm confusion; keyFunc's per-type key choice the second.
		jwt.WithValidMethods(algs),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(j.cfg.Leeway),
	}
	if j.cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(j.cfg.Audience))
	}
	if j.cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(j.cfg.Issuer))
	}
	if j.cfg.now != nil {
		opts = append(opts, jwt.WithTimeFunc(j.cfg.now))
	}
	st.parser = jwt.NewParser(opts...)
	return st, nil
}

// keyFunc hands the parser the keys that may verify tok: the secret for
// HS256 only, and public keys only to the algorithms of their type.
func (st *jwtState) keyFunc(tok *jwt.Token) (any, error) {
	alg := tok.Method.Alg()
	if alg == "HS256" {
		if st.secret == nil {
			return nil, errors.New("no HS256 secret")
		}
		return st.secret, nil
	}
	if st.keys == nil {
		return nil, errors.New("no public keys")
	}
	kid, _ := tok.Header["kid"].(string)
	keys := st.keys.candidates(alg, kid)
	if len(keys) == 0 {
		return nil, errors.New("no key for this token")
	}
	set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, len(keys))}
	for i, k := range keys {
		set.Keys[i] = k
	}
	return set, nil
}

// Authenticate verifies the token in c.Passcode and returns the principal
// its claims describe, expiring at exp plus the leeway. Errors are ErrAuthRequired, ErrTokenExpired,
// ErrTokenNotValidYet, ErrWrongAudience or ErrInvalidToken; none contains
// the token.
func (j *JWT) Authenticate(_ context.Context, c broker.Credentials) (*broker.Principal, error) {
	tok := c.Passcode
	if tok == "" {
		return nil, ErrAuthRequired
	}
	if len(tok) > maxTokenLen {
		return nil, ErrInvalidToken
	}
	st := j.state.Load()
	claims := jwt.MapClaims{}
	if _, err := st.parser.ParseWithClaims(tok, claims, st.keyFunc); err != nil {
		return nil, j.tokenError(err, claims)
	}
	return j.principal(claims)
}

// tokenError maps the library's error to one of ours. The library's own
// texts are dropped: they are for developers, and may grow details.
func (j *JWT) tokenError(err error, claims jwt.MapClaims) error {
	switch {
	case !errors.Is(err, jwt.ErrTokenInvalidClaims):
		// Malformed, unverifiable or forged. Claims are judged only after
		// the signature, so a forged token never learns which of its
		// claims would have passed.
		return ErrInvalidToken
	case errors.Is(err, jwt.ErrTokenExpired):
		return ErrTokenExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ErrTokenNotValidYet
	case errors.Is(err, jwt.ErrTokenInvalidAudience), j.cfg.Audience != "" && noAudience(claims):
		return ErrWrongAudience
	}
	return ErrInvalidToken
}

// noAudience reports a token without aud, which the library calls a
// missing claim; to the client it is the wrong audience all the same.
func noAudience(claims jwt.MapClaims) bool {
	aud, err := claims.GetAudience()
	return err == nil && (len(aud) == 0 || len(aud) == 1 && aud[0] == "")
}

// principal maps verified claims to a Principal.
func (j *JWT) principal(claims jwt.MapClaims) (*broker.Principal, error) {
	name, ok := claims[j.cfg.UserClaim].(string)
	if !ok || name == "" {
		return nil, ErrInvalidToken
	}
	p := &broker.Principal{Name: name}
	// The parser required exp and checked it; the session ends when the
	// token would no longer be accepted.
	if exp, err := claims.GetExpirationTime(); err == nil && exp != nil {
		p.Expires = exp.Add(j.cfg.Leeway)
	}
	for _, f := range []struct {
		claim string
		dst   *[]string
	}{
		{j.cfg.RolesClaim, &p.Roles},
		{j.cfg.PublishClaim, &p.Publish},
		{j.cfg.SubscribeClaim, &p.Subscribe},
		{j.cfg.VHostsClaim, &p.VHosts},
	} {
		v, present := claims[f.claim]
		if !present {
			continue
		}
		list, ok := stringList(v)
		if !ok {
			return nil, ErrInvalidToken
		}
		*f.dst = list
	}
	return p, nil
}

// stringList reads a claim that should be an array of strings. A present
// but empty array gives an empty, non-nil slice: "vhosts": [] grants no
// virtual host, where an absent claim leaves them unlimited.
func stringList(v any) ([]string, bool) {
	switch v := v.(type) {
	case string:
		return []string{v}, true
	case []any:
		out := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return nil, false
			}
			out = append(out, s)
		}
		return out, true
	}
	return nil, false
}

// LooksLikeJWT reports whether s has the shape of a compact JWS: three
// base64url segments separated by dots, the first starting with "eyJ" (the
// encoding of `{"`). It is a cheap router for Chain, not a check: a
// password such as "my.pass.word" does not look like a token.
func LooksLikeJWT(s string) bool {
	header, rest, ok := strings.Cut(s, ".")
	if !ok {
		return false
	}
	payload, sig, ok := strings.Cut(rest, ".")
	if !ok || payload == "" || !strings.HasPrefix(header, "eyJ") {
		return false
	}
	// The signature may be empty, so that alg-none tokens reach the JWT
	// authenticator and are refused there as tokens.
	return isBase64URL(header) && isBase64URL(payload) && isBase64URL(sig)
}

func isBase64URL(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
