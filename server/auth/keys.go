package auth

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"strings"
)

// minRSABits refuses keys that are factorable, or nearly so, today.
const minRSABits = 2048

// The algorithms each kind of public key may verify (read-only). A key is only ever
// offered to the algorithms of its own kind, which is what defeats the
// algorithm-confusion attacks (an RSA public key used as an HMAC secret).
var (
	rsaAlgs   = []string{"RS256", "RS384", "RS512"}
	ec256Algs = []string{"ES256"}
	ec384Algs = []string{"ES384"}
)

// publicKey is one verification key from a keys file.
type publicKey struct {
	kid string // "" for PEM keys and JWKS keys without one
	// alg restricts the key to one algorithm when its JWK says so; "" lets
	// it verify every algorithm of its kind.
	alg string
	key any // *rsa.PublicKey or *ecdsa.PublicKey
}

// keySet is the parsed keys file, keys grouped by the algorithms they may
// verify. Immutable.
type keySet struct {
	rsa, ec256, ec384 []publicKey
}

// algs lists the algorithms the set can verify, for jwt.WithValidMethods.
func (ks *keySet) algs() []string {
	var out []string
	if len(ks.rsa) > 0 {
		out = append(out, rsaAlgs...)
	}
	if len(ks.ec256) > 0 {
		out = append(out, ec256Algs...)
	}
	if len(ks.ec384) > 0 {
		out = append(out, ec384Algs...)
	}
	return out
}

// candidates returns the keys that may verify a token signed with alg and
// carrying kid: with a kid, the keys of that kid and the keys that have
// none (a PEM file names no kids); without one, every key of the kind.
func (ks *keySet) candidates(alg, kid string) []any {
	var pool []publicKey
	switch alg {
	case "RS256", "RS384", "RS512":
		pool = ks.rsa
	case "ES256":
		pool = ks.ec256
	case "ES384":
		pool = ks.ec384
	}
	var out []any
	for _, k := range pool {
		if (k.alg == "" || k.alg == alg) && (kid == "" || k.kid == "" || k.kid == kid) {
			out = append(out, k.key)
		}
	}
	return out
}

func (ks *keySet) add(k publicKey) error {
	switch pub := k.key.(type) {
	case *rsa.PublicKey:
		if bits := pub.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("RSA key of %d bits; at least %d required", bits, minRSABits)
		}
		if k.alg != "" && !slices.Contains(rsaAlgs, k.alg) {
			return fmt.Errorf("RSA key with alg %q", k.alg)
		}
		ks.rsa = append(ks.rsa, k)
	case *ecdsa.PublicKey:
		switch pub.Curve {
		case elliptic.P256():
			if k.alg != "" && k.alg != "ES256" {
				return fmt.Errorf("P-256 key with alg %q", k.alg)
			}
			ks.ec256 = append(ks.ec256, k)
		case elliptic.P384():
			if k.alg != "" && k.alg != "ES384" {
				return fmt.Errorf("P-384 key with alg %q", k.alg)
			}
			ks.ec384 = append(ks.ec384, k)
		default:
			return fmt.Errorf("EC key on curve %s; only P-256 and P-384 are supported", pub.Curve.Params().Name)
		}
	default:
		return fmt.Errorf("unsupported key type %T; want RSA or EC (P-256, P-384)", k.key)
	}
	return nil
}

// parseKeys reads a keys file: PEM (PUBLIC KEY, RSA PUBLIC KEY or
// CERTIFICATE blocks) or a JWKS JSON document. name is used in errors.
func parseKeys(name string, data []byte) (*keySet, error) {
	trimmed := bytes.TrimSpace(data)
	var (
		ks  *keySet
		err error
	)
	switch {
	case bytes.HasPrefix(trimmed, []byte("{")):
		ks, err = parseJWKS(trimmed)
	case bytes.Contains(trimmed, []byte("-----BEGIN")):
		ks, err = parsePEMKeys(trimmed)
	default:
		err = errors.New("neither PEM nor JWKS JSON")
	}
	if err == nil && len(ks.algs()) == 0 {
		err = errors.New("no usable public key")
	}
	if err != nil {
		return nil, fmt.Errorf("keys file %s: %w", name, err)
	}
	return ks, nil
}

func parsePEMKeys(data []byte) (*keySet, error) {
	ks := &keySet{}
	for i := 1; ; i++ {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			break
		}
		var (
			key any
			err error
		)
		switch block.Type {
		case "PUBLIC KEY":
			key, err = x509.ParsePKIXPublicKey(block.Bytes)
		case "RSA PUBLIC KEY":
			key, err = x509.ParsePKCS1PublicKey(block.Bytes)
		case "CERTIFICATE":
			// Only the key is used: the issuer is trusted because the
			// operator put its certificate here, not because of a chain.
			var cert *x509.Certificate
			if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
				key = cert.PublicKey
			}
		default:
			// A private key here is a mistake worth stopping for: the
			// broker needs only public keys, and should not hold more.
			return nil, fmt.Errorf("PEM block %d: type %q; want PUBLIC KEY or CERTIFICATE", i, block.Type)
		}
		if err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", i, block.Type, err)
		}
		if err := ks.add(publicKey{key: key}); err != nil {
			return nil, fmt.Errorf("PEM block %d (%s): %w", i, block.Type, err)
		}
	}
	return ks, nil
}

// jwk is the part of RFC 7517 JSON Web Key that verification needs.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// supportedAlg reports whether a JWK's alg is one this package verifies.
func supportedAlg(alg string) bool {
	return alg == "" || slices.Contains(rsaAlgs, alg) || slices.Contains(ec256Algs, alg) || slices.Contains(ec384Algs, alg)
}

func parseJWKS(data []byte) (*keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("JWKS: %w", err)
	}
	ks := &keySet{}
	for i, k := range doc.Keys {
		// Identity providers publish encryption keys and other key types
		// beside their signing keys; those are not errors, just not ours.
		// Symmetric ("oct") keys are skipped on purpose: a keys file
		// holds public keys only.
		if k.Use == "enc" || (k.Kty != "RSA" && k.Kty != "EC") || !supportedAlg(k.Alg) {
			continue
		}
		var (
			key any
			err error
		)
		if k.Kty == "RSA" {
			key, err = rsaFromJWK(k)
		} else {
			key, err = ecFromJWK(k)
		}
		if err == nil {
			err = ks.add(publicKey{kid: k.Kid, alg: k.Alg, key: key})
		}
		if err != nil {
			return nil, fmt.Errorf("JWKS key %d (kid %q): %w", i, k.Kid, err)
		}
	}
	return ks, nil
}

// b64url decodes a JWK member: base64url without padding, as RFC 7518
// says, though padded values are accepted too.
func b64url(field, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil {
		return nil, fmt.Errorf("member %q: %w", field, err)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("member %q is empty", field)
	}
	return b, nil
}

func rsaFromJWK(k jwk) (*rsa.PublicKey, error) {
	n, err := b64url("n", k.N)
	if err != nil {
		return nil, err
	}
	e, err := b64url("e", k.E)
	if err != nil {
		return nil, err
	}
	eInt := new(big.Int).SetBytes(e)
	if !eInt.IsInt64() || eInt.Int64() < 3 || eInt.Int64() > 1<<31-1 || eInt.Bit(0) == 0 {
		return nil, errors.New("RSA exponent out of range")
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(eInt.Int64())}, nil
}

func ecFromJWK(k jwk) (*ecdsa.PublicKey, error) {
	var (
		curve elliptic.Curve
		size  int
	)
	switch k.Crv {
	case "P-256":
		curve, size = elliptic.P256(), 32
	case "P-384":
		curve, size = elliptic.P384(), 48
	default:
		return nil, fmt.Errorf("EC curve %q; only P-256 and P-384 are supported", k.Crv)
	}
	x, err := b64url("x", k.X)
	if err != nil {
		return nil, err
	}
	y, err := b64url("y", k.Y)
	if err != nil {
		return nil, err
	}
	if len(x) != size || len(y) != size {
		return nil, fmt.Errorf("EC coordinates of %d and %d bytes; %s needs %d", len(x), len(y), k.Crv, size)
	}
	point := make([]byte, 0, 1+2*size)
	point = append(append(append(point, 4), x...), y...) // SEC 1 uncompressed form
	pub, err := ecdsa.ParseUncompressedPublicKey(curve, point)
	if err != nil {
		return nil, fmt.Errorf("EC key: %w", err)
	}
	return pub, nil
}
