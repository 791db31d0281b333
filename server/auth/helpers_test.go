package auth

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Keys are slow to make (RSA especially), so each test binary makes each
// one once; they are never modified.
var (
	testRSA     = sync.OnceValue(func() *rsa.PrivateKey { return genRSA() })
	testRSA2    = sync.OnceValue(func() *rsa.PrivateKey { return genRSA() })
	testEC256   = sync.OnceValue(func() *ecdsa.PrivateKey { return genEC(elliptic.P256()) })
	testEC384   = sync.OnceValue(func() *ecdsa.PrivateKey { return genEC(elliptic.P384()) })
	testSecret  = []byte("0123456789abcdef0123456789abcdef-hs256")
	otherSecret = []byte("fedcba9876543210fedcba9876543210-other")
)

func genRSA() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
}

func genEC(c elliptic.Curve) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(c, rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
}

// writeFile writes data to name in a fresh temporary directory.
func writeFile(t testing.TB, name string, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// pemPublic encodes public keys as PUBLIC KEY blocks.
func pemPublic(t testing.TB, keys ...crypto.PublicKey) []byte {
	t.Helper()
	var out []byte
	for _, k := range keys {
		der, err := x509.MarshalPKIXPublicKey(k)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	}
	return out
}

// pemCert wraps a key's public half in a self-signed certificate.
func pemCert(t testing.TB, key crypto.Signer) []byte {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "issuer"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// jwkOf renders a public key as a JWK map.
func jwkOf(kid string, k crypto.PublicKey) map[string]string {
	enc := base64.RawURLEncoding.EncodeToString
	switch k := k.(type) {
	case *rsa.PublicKey:
		return map[string]string{"kty": "RSA", "kid": kid, "n": enc(k.N.Bytes()), "e": enc(big.NewInt(int64(k.E)).Bytes())}
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		raw, err := k.Bytes()
		if err != nil {
			panic(err)
		}
		return map[string]string{"kty": "EC", "kid": kid, "crv": k.Curve.Params().Name,
			"x": enc(raw[1 : 1+size]), "y": enc(raw[1+size:])}
	}
	panic("unsupported key")
}

// jwks renders a JWKS document of the given JWKs.
func jwks(keys ...map[string]string) []byte {
	b, err := json.Marshal(map[string]any{"keys": keys})
	if err != nil {
		panic(err)
	}
	return b
}

// sign makes a token; kid is set in the header when non-empty.
func sign(t testing.TB, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("signing: %v", err)
	}
	return s
}

// claims returns valid claims for the test audience, expiring in an hour,
// with extra merged in (a nil value deletes the claim).
func claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{
		"sub": "alice",
		"aud": "stompbox",
		"iss": "issuer-1",
		"exp": time.Now().Add(time.Hour).Unix(),
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

// assertNoSecret fails if err's text contains the secret or a sizeable
// piece of it (any 8 consecutive bytes). Secrets shorter than 6 bytes are
// not checked: any text may contain "a" or "pw" by chance.
func assertNoSecret(t testing.TB, err error, secret string) {
	t.Helper()
	if err == nil || len(secret) < 6 {
		return
	}
	msg := err.Error()
	window := min(8, len(secret))
	for i := 0; i+window <= len(secret); i++ {
		if strings.Contains(msg, secret[i:i+window]) {
			t.Errorf("error %q contains part of the secret (%q)", msg, secret[i:i+window])
			return
		}
	}
}

// fmtV prints v every way fmt can.
func fmtV(v any) string { return fmt.Sprintf("%v %+v %#v %s", v, v, v, v) }
