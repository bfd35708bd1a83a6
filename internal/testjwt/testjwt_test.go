package testjwt

import (
	"encoding/base64"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// TestSignVerifiesAgainstJWKS: every key of Keys.JWKS verifies what Sign made
// with its private half, and the claims arrive as Claims set them.
func TestSignVerifiesAgainstJWKS(t *testing.T) {
	keys := NewKeys(t)
	b, err := os.ReadFile(keys.JWKS(t))
	if err != nil {
		t.Fatal(err)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		t.Fatalf("jwk.Parse(JWKS): %v", err)
	}
	now := time.Now()
	tests := []struct {
		name string
		alg  jwa.SignatureAlgorithm
		key  any
		kid  string
	}{
		{"RS256", jwa.RS256(), keys.RSA, "rsa1"},
		{"ES256", jwa.ES256(), keys.EC, "ec1"},
		{"EdDSA", jwa.EdDSA(), keys.Ed, "ed1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok, err := jwt.Parse([]byte(Sign(t, tt.alg, tt.key, tt.kid, Claims("alice@example.com", now))),
				jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true)), jwt.WithIssuer(Issuer), jwt.WithAudience(Audience))
			if err != nil {
				t.Fatalf("jwt.Parse(Sign(%s)) = %v, want a valid token", tt.name, err)
			}
			if sub, _ := tok.Subject(); sub != "alice@example.com" {
				t.Errorf("sub = %q, want alice@example.com", sub)
			}
		})
	}
	forged := Sign(t, jwa.RS256(), NewKeys(t).RSA, "rsa1", Claims("alice@example.com", now))
	if _, err := jwt.Parse([]byte(forged), jwt.WithKeySet(set, jws.WithInferAlgorithmFromKey(true))); err == nil {
		t.Error("jwt.Parse of a token signed by another key with kid rsa1 succeeded, want a signature error")
	}
}

// TestHandMade: the header and claims come out as given, the signature is
// the signer's over "header.payload", and nil leaves it empty.
func TestHandMade(t *testing.T) {
	tok := HandMade(map[string]any{"alg": "HS256"}, map[string]any{"sub": "x"}, HMAC([]byte("k")))
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("HandMade = %q, want three parts", tok)
	}
	var hdr map[string]any
	if b, err := base64.RawURLEncoding.DecodeString(parts[0]); err != nil || json.Unmarshal(b, &hdr) != nil || hdr["alg"] != "HS256" {
		t.Errorf("header of %q = %v (%v), want alg HS256", tok, hdr, err)
	}
	if got, want := parts[2], base64.RawURLEncoding.EncodeToString(HMAC([]byte("k"))([]byte(parts[0]+"."+parts[1]))); got != want {
		t.Errorf("signature = %q, want %q", got, want)
	}
	if unsigned := HandMade(map[string]any{"alg": "none"}, nil, nil); !strings.HasSuffix(unsigned, ".") {
		t.Errorf("HandMade with no signer = %q, want an empty signature", unsigned)
	}
}
