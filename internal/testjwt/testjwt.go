package testjwt

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// The issuer and audience of the tokens Claims describes; configure the
// verifier under test with them.
const (
	Issuer   = "https://idp.example.com"
	Audience = "ztp"
)

// Keys are an issuer's signing keys, one per algorithm the proxy accepts.
type Keys struct {
	RSA *rsa.PrivateKey   // RS256
	EC  *ecdsa.PrivateKey // ES256 (P-256)
	Ed  ed25519.PrivateKey
}

// NewKeys generates a fresh set of keys.
func NewKeys(t testing.TB) *Keys {
	t.Helper()
	r, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Keys{RSA: r, EC: e, Ed: ed}
}

// JWKS writes the public keys as a JWKS file with the key ids "rsa1", "ec1"
// and "ed1", and returns its path.
func (k *Keys) JWKS(t testing.TB) string {
	t.Helper()
	return WriteJWKS(t,
		Key{Public: &k.RSA.PublicKey, KID: "rsa1"},
		Key{Public: &k.EC.PublicKey, KID: "ec1"},
		Key{Public: k.Ed.Public(), KID: "ed1"},
	)
}

// Key is one entry of a JWKS file.
type Key struct {
	Public any    // the key to publish (a private key is published as it is)
	KID    string // "kid"
	Alg    string // "alg", left out when empty
	Use    string // "use", left out when empty
}

// WriteJWKS writes keys as a JWKS file in a new temporary directory and
// returns its (absolute) path.
func WriteJWKS(t testing.TB, keys ...Key) string {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		key, err := jwk.Import(k.Public)
		if err != nil {
			t.Fatalf("jwk.Import(%T): %v", k.Public, err)
		}
		if err := key.Set(jwk.KeyIDKey, k.KID); err != nil {
			t.Fatal(err)
		}
		if k.Alg != "" {
			if err := key.Set(jwk.AlgorithmKey, k.Alg); err != nil {
				t.Fatal(err)
			}
		}
		if k.Use != "" {
			if err := key.Set(jwk.KeyUsageKey, k.Use); err != nil {
				t.Fatal(err)
			}
		}
		if err := set.AddKey(key); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// Claims returns claims that are valid for sub at now, from Issuer for
// Audience, good for ten more minutes; tests change what they test.
func Claims(sub string, now time.Time) map[string]any {
	return map[string]any{
		"iss": Issuer,
		"aud": []string{Audience},
		"sub": sub,
		"iat": now.Add(-time.Minute).Unix(),
		"nbf": now.Add(-time.Minute).Unix(),
		"exp": now.Add(10 * time.Minute).Unix(),
	}
}

// Sign makes a compact JWS of claims with the given algorithm, key and key id
// ("" leaves kid out).
func Sign(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range claims {
		if err := tok.Set(k, v); err != nil {
			t.Fatalf("set claim %s: %v", k, err)
		}
	}
	hdr := jws.NewHeaders()
	if kid != "" {
		if err := hdr.Set(jws.KeyIDKey, kid); err != nil {
			t.Fatal(err)
		}
	}
	b, err := jwt.Sign(tok, jwt.WithKey(alg, key, jws.WithProtectedHeaders(hdr)))
	if err != nil {
		t.Fatalf("jwt.Sign(%s): %v", alg, err)
	}
	return string(b)
}

// HandMade builds a compact token from a raw header and claims, signed by sign
// over "header.payload" (nil: an empty signature), the way an attacker would,
// without a library that refuses to.
func HandMade(header, claims map[string]any, sign func([]byte) []byte) string {
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(claims)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	var sig []byte
	if sign != nil {
		sig = sign([]byte(input))
	}
	return input + "." + enc.EncodeToString(sig)
}

// HMAC returns a HandMade signer computing HMAC-SHA256 with secret: with a
// public key as the secret, the classic algorithm-confusion forgery.
func HMAC(secret []byte) func([]byte) []byte {
	return func(in []byte) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write(in)
		return m.Sum(nil)
	}
}
