package auth

import (
	"context"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/stompbox/stompbox/broker"
)

// testJWTs builds one authenticator per kind of key configuration.
type testJWTs struct {
	hs, rsaPEM, rsaCert, jwks, ecPEM, both *JWT
}

func newTestJWTs(t testing.TB) testJWTs {
	t.Helper()
	base := JWTConfig{Audience: "stompbox", Issuer: "issuer-1"}
	mk := func(mut func(*JWTConfig)) *JWT {
		cfg := base
		mut(&cfg)
		j, err := NewJWT(cfg)
		if err != nil {
			t.Fatalf("NewJWT(%v): %v", cfg, err)
		}
		return j
	}
	encKey := jwkOf("enc1", &testRSA2().PublicKey)
	encKey["use"] = "enc"
	jwksFile := writeFile(t, "jwks.json", jwks(
		jwkOf("r1", &testRSA().PublicKey),
		jwkOf("e1", &testEC256().PublicKey),
		encKey, // an encryption key is skipped, not trusted for signatures
		map[string]string{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"},
	))
	rsaFile := writeFile(t, "rsa.pem", pemPublic(t, &testRSA().PublicKey))
	return testJWTs{
		hs:      mk(func(c *JWTConfig) { c.Secret = testSecret }),
		rsaPEM:  mk(func(c *JWTConfig) { c.KeysFile = rsaFile }),
		rsaCert: mk(func(c *JWTConfig) { c.KeysFile = writeFile(t, "cert.pem", pemCert(t, testRSA())) }),
		jwks:    mk(func(c *JWTConfig) { c.KeysFile = jwksFile }),
		ecPEM: mk(func(c *JWTConfig) {
			c.KeysFile = writeFile(t, "ec.pem", pemPublic(t, &testEC256().PublicKey, &testEC384().PublicKey))
		}),
		both: mk(func(c *JWTConfig) { c.Secret = testSecret; c.KeysFile = rsaFile }),
	}
}

func TestJWTAuthenticate(t *testing.T) {
	js := newTestJWTs(t)
	now := time.Now()
	rsaDER, err := x509.MarshalPKIXPublicKey(&testRSA().PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaPEMBytes := pemPublic(t, &testRSA().PublicKey)
	none := func(c jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodNone, c).SignedString(jwt.UnsafeAllowNoneSignatureType)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	alice := &broker.Principal{Name: "alice"}
	tests := []struct {
		name    string
		j       *JWT
		token   string
		wantErr error
		want    *broker.Principal
	}{
		{"HS256 valid", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil)), nil, alice},
		{"RS256 valid, PEM", js.rsaPEM, sign(t, jwt.SigningMethodRS256, testRSA(), "", claims(nil)), nil, alice},
		{"RS512 valid, PEM", js.rsaPEM, sign(t, jwt.SigningMethodRS512, testRSA(), "", claims(nil)), nil, alice},
		{"RS256 valid, certificate", js.rsaCert, sign(t, jwt.SigningMethodRS256, testRSA(), "", claims(nil)), nil, alice},
		{"RS256 valid, JWKS by kid", js.jwks, sign(t, jwt.SigningMethodRS256, testRSA(), "r1", claims(nil)), nil, alice},
		{"RS256 valid, JWKS without kid", js.jwks, sign(t, jwt.SigningMethodRS256, testRSA(), "", claims(nil)), nil, alice},
		{"ES256 valid, JWKS by kid", js.jwks, sign(t, jwt.SigningMethodES256, testEC256(), "e1", claims(nil)), nil, alice},
		{"ES256 valid, PEM", js.ecPEM, sign(t, jwt.SigningMethodES256, testEC256(), "", claims(nil)), nil, alice},
		{"ES384 valid, PEM", js.ecPEM, sign(t, jwt.SigningMethodES384, testEC384(), "", claims(nil)), nil, alice},
		{"HS256 and RS256 side by side", js.both, sign(t, jwt.SigningMethodRS256, testRSA(), "", claims(nil)), nil, alice},
		{"aud as a list", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"aud": []string{"x", "stompbox"}})), nil, alice},
		{"expired within leeway", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"exp": now.Add(-10 * time.Second).Unix()})), nil, alice},

		{"expired", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()})), ErrTokenExpired, nil},
		{"expired, RS256", js.rsaPEM, sign(t, jwt.SigningMethodRS256, testRSA(), "", claims(jwt.MapClaims{"exp": now.Add(-time.Minute).Unix()})), ErrTokenExpired, nil},
		{"not valid yet", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"nbf": now.Add(time.Hour).Unix()})), ErrTokenNotValidYet, nil},
		{"wrong audience", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"aud": "elsewhere"})), ErrWrongAudience, nil},
		{"no audience", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"aud": nil})), ErrWrongAudience, nil},
		{"wrong issuer", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"iss": "issuer-2"})), ErrInvalidToken, nil},
		{"missing exp", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"exp": nil})), ErrInvalidToken, nil},
		{"missing sub", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"sub": nil})), ErrInvalidToken, nil},
		{"sub not a string", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"sub": 7})), ErrInvalidToken, nil},
		{"roles not strings", js.hs, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(jwt.MapClaims{"roles": []any{"a", 1}})), ErrInvalidToken, nil},
		{"wrong HS256 secret", js.hs, sign(t, jwt.SigningMethodHS256, otherSecret, "", claims(nil)), ErrInvalidToken, nil},
		{"wrong RSA key", js.rsaPEM, sign(t, jwt.SigningMethodRS256, testRSA2(), "", claims(nil)), ErrInvalidToken, nil},
		{"wrong EC key", js.ecPEM, sign(t, jwt.SigningMethodES256, genEC(elliptic.P256()), "", claims(nil)), ErrInvalidToken, nil},
		{"unknown kid", js.jwks, sign(t, jwt.SigningMethodRS256, testRSA(), "r9", claims(nil)), ErrInvalidToken, nil},
		{"kid of the other key type", js.jwks, sign(t, jwt.SigningMethodRS256, testRSA(), "e1", claims(nil)), ErrInvalidToken, nil},
		{"key of the skipped enc JWK", js.jwks, sign(t, jwt.SigningMethodRS256, testRSA2(), "enc1", claims(nil)), ErrInvalidToken, nil},
		{"RS256 to an HS256-only config", js.hs, sign(t, jwt.SigningMethodRS256, testRSA(), "", claims(nil)), ErrInvalidToken, nil},
		{"HS256 to an RS-only config", js.rsaPEM, sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil)), ErrInvalidToken, nil},
		{"PS256 refused", js.rsaPEM, sign(t, jwt.SigningMethodPS256, testRSA(), "", claims(nil)), ErrInvalidToken, nil},
		{"alg none refused", js.hs, none(claims(nil)), ErrInvalidToken, nil},
		{"alg none refused, RS config", js.rsaPEM, none(claims(nil)), ErrInvalidToken, nil},
		// The classic confusion attack: the attacker knows the public key
		// and uses it as an HMAC secret, hoping the verifier does too.
		{"HS256 signed with the RSA public key PEM", js.rsaPEM, sign(t, jwt.SigningMethodHS256, rsaPEMBytes, "", claims(nil)), ErrInvalidToken, nil},
		{"HS256 signed with the RSA public key DER", js.rsaPEM, sign(t, jwt.SigningMethodHS256, rsaDER, "", claims(nil)), ErrInvalidToken, nil},
		{"HS256 with the RSA public key, mixed config", js.both, sign(t, jwt.SigningMethodHS256, rsaPEMBytes, "", claims(nil)), ErrInvalidToken, nil},
		{"HS256 with the RSA public key, JWKS", js.jwks, sign(t, jwt.SigningMethodHS256, rsaPEMBytes, "r1", claims(nil)), ErrInvalidToken, nil},
		{"tampered payload", js.hs, tamper(sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil))), ErrInvalidToken, nil},
		{"garbage", js.hs, "not-a-token", ErrInvalidToken, nil},
		{"empty", js.hs, "", ErrAuthRequired, nil},
		{"too long", js.hs, "eyJ" + strings.Repeat("a", maxTokenLen) + ".e.e", ErrInvalidToken, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, creds := range []broker.Credentials{
				{Login: "ignored", Passcode: tt.token},
				{Passcode: tt.token, FromUpgrade: true},
			} {
				p, err := tt.j.Authenticate(context.Background(), creds)
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				if err != nil {
					if err.Error() != tt.wantErr.Error() {
						t.Errorf("text %q", err)
					}
					assertNoSecret(t, err, tt.token)
					assertNoSecret(t, err, string(testSecret))
					continue
				}
				if p.Name != tt.want.Name || p.Roles != nil || p.Publish != nil || p.VHosts != nil || p.Anonymous {
					t.Errorf("principal = %+v, want %+v", p, tt.want)
				}
			}
		})
	}
}

// tamper changes the payload after signing: the signature must fail.
func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	c := claims(jwt.MapClaims{"sub": "root"})
	forged, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SigningString()
	return strings.Split(forged, ".")[0] + "." + strings.Split(forged, ".")[1] + "." + parts[2]
}

func TestJWTClaimsMapping(t *testing.T) {
	tests := []struct {
		name   string
		cfg    JWTConfig
		claims jwt.MapClaims
		want   broker.Principal
	}{
		{
			name: "default claim names",
			claims: claims(jwt.MapClaims{
				"roles":     []string{"admin", "ops"},
				"publish":   []string{"/topic/chat.#"},
				"subscribe": []string{"/topic/#", "/queue/orders"},
				"vhosts":    []string{"/", "tenant-a"},
			}),
			want: broker.Principal{Name: "alice", Roles: []string{"admin", "ops"}, Publish: []string{"/topic/chat.#"},
				Subscribe: []string{"/topic/#", "/queue/orders"}, VHosts: []string{"/", "tenant-a"}},
		},
		{
			name: "configured claim names",
			cfg: JWTConfig{UserClaim: "preferred_username", RolesClaim: "groups", PublishClaim: "pub",
				SubscribeClaim: "sub_patterns", VHostsClaim: "tenants"},
			claims: claims(jwt.MapClaims{
				"preferred_username": "bob",
				"groups":             []string{"dev"},
				"roles":              []string{"ignored"},
				"pub":                "/queue/jobs",
				"sub_patterns":       []string{"/queue/results.*"},
				"tenants":            []string{"t1"},
			}),
			want: broker.Principal{Name: "bob", Roles: []string{"dev"}, Publish: []string{"/queue/jobs"},
				Subscribe: []string{"/queue/results.*"}, VHosts: []string{"t1"}},
		},
		{
			name:   "empty vhosts list limits to none",
			claims: claims(jwt.MapClaims{"vhosts": []string{}}),
			want:   broker.Principal{Name: "alice", VHosts: []string{}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.Secret, cfg.Audience = testSecret, "stompbox"
			j, err := NewJWT(cfg)
			if err != nil {
				t.Fatal(err)
			}
			p, err := j.Authenticate(context.Background(), broker.Credentials{Passcode: sign(t, jwt.SigningMethodHS256, testSecret, "", tt.claims)})
			if err != nil {
				t.Fatal(err)
			}
			w := tt.want
			if p.Name != w.Name || !slices.Equal(p.Roles, w.Roles) || !slices.Equal(p.Publish, w.Publish) ||
				!slices.Equal(p.Subscribe, w.Subscribe) || !slices.Equal(p.VHosts, w.VHosts) || (p.VHosts == nil) != (w.VHosts == nil) {
				t.Errorf("principal = %+v\nwant        %+v", *p, w)
			}
		})
	}
}

func TestJWTLeewayAndClock(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "a", "exp": now.Unix(), "nbf": now.Add(-time.Minute).Unix()})
	tests := []struct {
		leeway time.Duration
		at     time.Time
		want   error
	}{
		{0, now.Add(29 * time.Second), nil}, // default 30s
		{0, now.Add(31 * time.Second), ErrTokenExpired},
		{-1, now.Add(time.Second), ErrTokenExpired}, // no leeway
		{-1, now.Add(-time.Second), nil},
		{time.Minute, now.Add(59 * time.Second), nil},
		{-1, now.Add(-2 * time.Minute), ErrTokenNotValidYet},
		{2 * time.Minute, now.Add(-2*time.Minute - time.Second), nil},
	}
	for _, tt := range tests {
		at := tt.at
		j, err := NewJWT(JWTConfig{Secret: testSecret, Leeway: tt.leeway, now: func() time.Time { return at }})
		if err != nil {
			t.Fatal(err)
		}
		p, err := j.Authenticate(context.Background(), broker.Credentials{Passcode: tok})
		if !errors.Is(err, tt.want) {
			t.Errorf("leeway %v at exp%+v: err = %v, want %v", tt.leeway, tt.at.Sub(now), err, tt.want)
		}
		// The session ends when the token would be refused: exp plus the
		// leeway in force.
		leeway := map[time.Duration]time.Duration{0: DefaultLeeway, -1: 0}[tt.leeway]
		if tt.leeway > 0 {
			leeway = tt.leeway
		}
		if err == nil && !p.Expires.Equal(now.Add(leeway)) {
			t.Errorf("leeway %v: Expires = %v, want exp+%v = %v", tt.leeway, p.Expires, leeway, now.Add(leeway))
		}
	}
}

func TestNewJWTErrors(t *testing.T) {
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	rsaSmall := writeFile(t, "small.pem", pemPublic(t, &small.PublicKey))
	tests := []struct {
		name string
		cfg  JWTConfig
		want string
	}{
		{"nothing", JWTConfig{}, "need an HS256 secret or a keys file"},
		{"short secret", JWTConfig{Secret: []byte("short-secret-value")}, "shorter than 32 bytes"},
		{"missing keys file", JWTConfig{KeysFile: "/nonexistent/keys.pem"}, "no such file"},
		{"not keys", JWTConfig{KeysFile: writeFile(t, "k", []byte("hello"))}, "neither PEM nor JWKS"},
		{"empty JWKS", JWTConfig{KeysFile: writeFile(t, "k.json", []byte(`{"keys":[]}`))}, "no usable public key"},
		{"bad JWKS JSON", JWTConfig{KeysFile: writeFile(t, "k.json", []byte(`{"keys":[`))}, "JWKS"},
		{"bad n", JWTConfig{KeysFile: writeFile(t, "k.json", []byte(`{"keys":[{"kty":"RSA","kid":"a","n":"!!","e":"AQAB"}]}`))}, `JWKS key 0 (kid "a"): member "n"`},
		{"EC off curve", JWTConfig{KeysFile: writeFile(t, "k.json", jwks(map[string]string{"kty": "EC", "crv": "P-256",
			"x": strings.Repeat("A", 43), "y": strings.Repeat("A", 43)}))}, "EC key"},
		{"EC P-521", JWTConfig{KeysFile: writeFile(t, "k.json", jwks(map[string]string{"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"}))}, "only P-256 and P-384"},
		{"alg mismatch", JWTConfig{KeysFile: writeFile(t, "k.json", jwks(withAlg(jwkOf("x", &testEC256().PublicKey), "ES384")))}, `P-256 key with alg "ES384"`},
		{"private key in PEM", JWTConfig{KeysFile: writeFile(t, "k.pem", []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))}, `type "PRIVATE KEY"`},
		{"small RSA", JWTConfig{KeysFile: rsaSmall}, "RSA key of 1024 bits; at least 2048"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewJWT(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			assertNoSecret(t, err, string(tt.cfg.Secret))
		})
	}
}

func withAlg(k map[string]string, alg string) map[string]string {
	k["alg"] = alg
	return k
}

func TestJWTReload(t *testing.T) {
	path := writeFile(t, "keys.pem", pemPublic(t, &testRSA().PublicKey))
	j, err := NewJWT(JWTConfig{KeysFile: path})
	if err != nil {
		t.Fatal(err)
	}
	tok1 := sign(t, jwt.SigningMethodRS256, testRSA(), "", claims(nil))
	tok2 := sign(t, jwt.SigningMethodRS256, testRSA2(), "", claims(nil))
	ok := func(tok string) bool {
		_, err := j.Authenticate(context.Background(), broker.Credentials{Passcode: tok})
		return err == nil
	}
	if !ok(tok1) || ok(tok2) {
		t.Fatal("before rotation")
	}
	if err := os.WriteFile(path, pemPublic(t, &testRSA2().PublicKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := j.Reload(); err != nil {
		t.Fatal(err)
	}
	if ok(tok1) || !ok(tok2) {
		t.Fatal("after rotation")
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := j.Reload(); err == nil {
		t.Fatal("reloaded garbage")
	}
	if !ok(tok2) {
		t.Fatal("a failed reload dropped the keys")
	}
	hs, _ := NewJWT(JWTConfig{Secret: testSecret})
	if err := hs.Reload(); err != nil {
		t.Errorf("reload without a keys file: %v", err)
	}
}

func TestJWTStringHidesSecret(t *testing.T) {
	cfg := JWTConfig{Secret: testSecret, Audience: "stompbox"}
	j, err := NewJWT(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{fmtV(cfg), fmtV(j), fmtV(&cfg)} {
		if strings.Contains(s, string(testSecret[:8])) || strings.Contains(s, "48 49 50") || strings.Contains(s, "0x30, 0x31") {
			t.Errorf("output shows the secret: %s", s)
		}
		if !strings.Contains(s, "HS256 secret") || !strings.Contains(s, "audience stompbox") {
			t.Errorf("output lacks the description: %s", s)
		}
	}
	// The config keeps a copy: the caller may wipe its buffer.
	buf := append([]byte(nil), testSecret...)
	j2, _ := NewJWT(JWTConfig{Secret: buf})
	clear(buf)
	tok := sign(t, jwt.SigningMethodHS256, testSecret, "", jwt.MapClaims{"sub": "a", "exp": time.Now().Add(time.Minute).Unix()})
	if _, err := j2.Authenticate(context.Background(), broker.Credentials{Passcode: tok}); err != nil {
		t.Errorf("after wiping the caller's buffer: %v", err)
	}
}

func TestLooksLikeJWT(t *testing.T) {
	real := sign(t, jwt.SigningMethodHS256, testSecret, "", claims(nil))
	tests := []struct {
		in   string
		want bool
	}{
		{real, true},
		{"eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.", true}, // alg none: routed to JWT, refused there
		{"eyJ.e.sig-_", true},
		{"", false},
		{"password", false},
		{"my.pass.word", false},
		{"eyJa.b", false},
		{"eyJa.b.c.d", false},
		{"eyJa..c", false},
		{"eyJa.b c.d", false},
		{"eyJa.b+/.c", false}, // standard base64, not base64url
		{"eyJa.b.c=", false},
	}
	for _, tt := range tests {
		if got := LooksLikeJWT(tt.in); got != tt.want {
			t.Errorf("LooksLikeJWT(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func BenchmarkJWTAuthenticate(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  func() JWTConfig
		tok  func() string
	}{
		{"HS256", func() JWTConfig { return JWTConfig{Secret: testSecret, Audience: "stompbox"} },
			func() string { return sign(b, jwt.SigningMethodHS256, testSecret, "", claims(nil)) }},
		{"RS256", func() JWTConfig {
			return JWTConfig{KeysFile: writeFile(b, "k.pem", pemPublic(b, &testRSA().PublicKey)), Audience: "stompbox"}
		}, func() string { return sign(b, jwt.SigningMethodRS256, testRSA(), "", claims(nil)) }},
		{"ES256", func() JWTConfig {
			return JWTConfig{KeysFile: writeFile(b, "k.pem", pemPublic(b, &testEC256().PublicKey)), Audience: "stompbox"}
		}, func() string { return sign(b, jwt.SigningMethodES256, testEC256(), "", claims(nil)) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			j, err := NewJWT(bc.cfg())
			if err != nil {
				b.Fatal(err)
			}
			creds := broker.Credentials{Passcode: bc.tok()}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := j.Authenticate(context.Background(), creds); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
