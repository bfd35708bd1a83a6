package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/pki"
)

const (
	testIssuer   = "https://idp.example.com"
	testAudience = "ztp"
)

// testNow is the fixed instant every token in these tests is checked at.
var testNow = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// issuerKeys are signing keys minted for a test, one per accepted algorithm.
type issuerKeys struct {
	rsa *rsa.PrivateKey
	ec  *ecdsa.PrivateKey
	ed  ed25519.PrivateKey
}

func newIssuerKeys(t testing.TB) *issuerKeys {
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
	return &issuerKeys{rsa: r, ec: e, ed: ed}
}

// jwksKey is one entry to put in a JWKS file: a public key, its kid and
// optionally a declared alg.
type jwksKey struct {
	pub any
	kid string
	alg string
	use string
}

// writeJWKS writes the public keys as a JWKS file and returns its path.
func writeJWKS(t testing.TB, keys ...jwksKey) string {
	t.Helper()
	set := jwk.NewSet()
	for _, k := range keys {
		key, err := jwk.Import(k.pub)
		if err != nil {
			t.Fatalf("jwk.Import(%T): %v", k.pub, err)
		}
		if err := key.Set(jwk.KeyIDKey, k.kid); err != nil {
			t.Fatal(err)
		}
		if k.alg != "" {
			if err := key.Set(jwk.AlgorithmKey, k.alg); err != nil {
				t.Fatal(err)
			}
		}
		if k.use != "" {
			if err := key.Set(jwk.KeyUsageKey, k.use); err != nil {
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

func (k *issuerKeys) jwks(t testing.TB) string {
	return writeJWKS(t,
		jwksKey{pub: &k.rsa.PublicKey, kid: "rsa1"},
		jwksKey{pub: &k.ec.PublicKey, kid: "ec1"},
		jwksKey{pub: k.ed.Public(), kid: "ed1"},
	)
}

// claims returns valid claims for sub at testNow; tests change what they test.
func claims(sub string) map[string]any {
	return map[string]any{
		"iss": testIssuer,
		"aud": []string{testAudience},
		"sub": sub,
		"iat": testNow.Add(-time.Minute).Unix(),
		"nbf": testNow.Add(-time.Minute).Unix(),
		"exp": testNow.Add(10 * time.Minute).Unix(),
	}
}

// sign makes a compact JWS of c with the given algorithm, key and kid (""
// leaves kid out).
func sign(t testing.TB, alg jwa.SignatureAlgorithm, key any, kid string, c map[string]any) string {
	t.Helper()
	tok := jwt.New()
	for k, v := range c {
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

// handMade builds a compact token from a raw header and claims, signed by
// signFn over "header.payload" (nil: empty signature), the way an attacker
// would, without a library that refuses to.
func handMade(t testing.TB, header map[string]any, c map[string]any, signFn func([]byte) []byte) string {
	t.Helper()
	enc := base64.RawURLEncoding
	h, _ := json.Marshal(header)
	p, _ := json.Marshal(c)
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(p)
	var sig []byte
	if signFn != nil {
		sig = signFn([]byte(input))
	}
	return input + "." + enc.EncodeToString(sig)
}

func newTestVerifier(t testing.TB, jwksFile string, mod func(*JWTConfig)) *JWTVerifier {
	t.Helper()
	cfg := JWTConfig{
		Issuer: testIssuer, Audience: testAudience, JWKSFile: jwksFile,
		Leeway: 30 * time.Second, Now: func() time.Time { return testNow },
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := NewJWTVerifier(cfg)
	if err != nil {
		t.Fatalf("NewJWTVerifier: %v", err)
	}
	return v
}

func TestJWTVerify(t *testing.T) {
	keys := newIssuerKeys(t)
	other := newIssuerKeys(t) // same kids, keys the proxy does not trust
	v := newTestVerifier(t, keys.jwks(t), nil)

	with := func(mod func(map[string]any)) map[string]any {
		c := claims("alice@example.com")
		mod(c)
		return c
	}
	rsaPubDER, err := x509.MarshalPKIXPublicKey(&keys.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaJWK, err := jwk.Import(&keys.rsa.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaJWKJSON, _ := json.Marshal(rsaJWK)
	hmacWith := func(secret []byte) func([]byte) []byte {
		return func(in []byte) []byte {
			m := hmac.New(sha256.New, secret)
			m.Write(in)
			return m.Sum(nil)
		}
	}
	rsaSign := func(in []byte) []byte {
		d := sha256.Sum256(in)
		s, err := rsa.SignPKCS1v15(rand.Reader, keys.rsa, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := sign(t, jwa.RS256(), keys.rsa, "rsa1", claims("alice@example.com"))
	parts := strings.Split(valid, ".")
	tamperedClaims, _ := json.Marshal(claims("mallory@example.com"))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(tamperedClaims) + "." + parts[2]

	tests := []struct {
		name    string
		token   string
		wantID  string
		wantErr string // substring of the error; "" = must succeed
	}{
		{name: "RS256", token: valid, wantID: "alice@example.com"},
		{name: "ES256", token: sign(t, jwa.ES256(), keys.ec, "ec1", claims("alice@example.com")), wantID: "alice@example.com"},
		{name: "EdDSA", token: sign(t, jwa.EdDSA(), keys.ed, "ed1", claims("alice@example.com")), wantID: "alice@example.com"},
		{name: "audience as a plain string", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["aud"] = testAudience })), wantID: "alice@example.com"},
		{name: "one of several audiences", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["aud"] = []string{"other", testAudience} })), wantID: "alice@example.com"},
		{name: "expired within leeway", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["exp"] = testNow.Add(-20 * time.Second).Unix() })), wantID: "alice@example.com"},
		{name: "not before within leeway", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["nbf"] = testNow.Add(20 * time.Second).Unix() })), wantID: "alice@example.com"},

		{name: "expired", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["exp"] = testNow.Add(-31 * time.Second).Unix() })), wantErr: "token expired"},
		{name: "not yet valid", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["nbf"] = testNow.Add(time.Minute).Unix() })), wantErr: "not valid yet"},
		{name: "no exp", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { delete(c, "exp") })), wantErr: "required claim"},
		{name: "wrong audience", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["aud"] = []string{"other"} })), wantErr: "wrong audience"},
		{name: "no audience", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { delete(c, "aud") })), wantErr: "audience"},
		{name: "wrong issuer", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), wantErr: "wrong issuer"},
		{name: "issuer differs by a trailing slash", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", with(func(c map[string]any) { c["iss"] = testIssuer + "/" })), wantErr: "wrong issuer"},
		{name: "signed by an untrusted key with a trusted kid", token: sign(t, jwa.RS256(), other.rsa, "rsa1", claims("alice@example.com")), wantErr: "bad signature"},
		{name: "claims tampered after signing", token: tampered, wantErr: "bad signature"},
		{name: "unknown kid", token: sign(t, jwa.RS256(), keys.rsa, "rsa9", claims("alice@example.com")), wantErr: `unknown key id "rsa9"`},
		{name: "no kid with several keys", token: sign(t, jwa.RS256(), keys.rsa, "", claims("alice@example.com")), wantErr: "no kid"},
		{name: "alg of another key type", token: sign(t, jwa.ES256(), keys.ec, "rsa1", claims("alice@example.com")), wantErr: "does not match"},
		{name: "alg none", token: handMade(t, map[string]any{"alg": "none", "typ": "JWT"}, claims("alice@example.com"), nil), wantErr: `"none" is not accepted`},
		{name: "alg none with kid", token: handMade(t, map[string]any{"alg": "none", "kid": "rsa1"}, claims("alice@example.com"), nil), wantErr: `"none" is not accepted`},
		{name: "alg NONE", token: handMade(t, map[string]any{"alg": "NONE"}, claims("alice@example.com"), nil), wantErr: "not accepted"},
		{name: "HS256 keyed with the RSA public key (DER)", token: handMade(t, map[string]any{"alg": "HS256", "kid": "rsa1"}, claims("alice@example.com"), hmacWith(rsaPubDER)), wantErr: `"HS256" is not accepted`},
		{name: "HS256 keyed with the RSA public JWK", token: handMade(t, map[string]any{"alg": "HS256", "kid": "rsa1"}, claims("alice@example.com"), hmacWith(rsaJWKJSON)), wantErr: `"HS256" is not accepted`},
		{name: "HS512", token: handMade(t, map[string]any{"alg": "HS512", "kid": "rsa1"}, claims("alice@example.com"), hmacWith([]byte("x"))), wantErr: "not accepted"},
		{name: "RS384", token: handMade(t, map[string]any{"alg": "RS384", "kid": "rsa1"}, claims("alice@example.com"), rsaSign), wantErr: "not accepted"},
		{name: "no alg", token: handMade(t, map[string]any{"kid": "rsa1"}, claims("alice@example.com"), rsaSign), wantErr: "alg"},
		{name: "hand-made RS256 is fine", token: handMade(t, map[string]any{"alg": "RS256", "kid": "rsa1"}, claims("alice@example.com"), rsaSign), wantID: "alice@example.com"},
		{name: "unknown critical header", token: handMade(t, map[string]any{"alg": "RS256", "kid": "rsa1", "crit": []string{"x-must-know"}, "x-must-know": 1}, claims("alice@example.com"), rsaSign), wantErr: "bad signature"},
		{name: "sub not a string", token: handMade(t, map[string]any{"alg": "RS256", "kid": "rsa1"}, with(func(c map[string]any) { c["sub"] = 42 }), rsaSign), wantErr: "invalid token"},
		{name: "sub poses as a SPIFFE ID", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", claims("spiffe://example.org/ns/prod/sa/deployer")), wantErr: "reserved for certificates"},
		{name: "sub poses as a certificate CN", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", claims("cn:alice")), wantErr: "reserved for certificates"},
		{name: "sub with a control character", token: sign(t, jwa.RS256(), keys.rsa, "rsa1", claims("alice\n@example.com")), wantErr: "printable"},
		{name: "empty", token: "", wantErr: "not a compact JWS"},
		{name: "two parts", token: parts[0] + "." + parts[1], wantErr: "not a compact JWS"},
		{name: "JSON serialization", token: `{"payload":"` + parts[1] + `","signatures":[]}`, wantErr: "not a compact JWS"},
		{name: "garbage", token: "a.b.c", wantErr: "malformed"},
		{name: "oversized", token: strings.Repeat("a", maxTokenBytes) + ".b.c", wantErr: "longer than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(tt.token)
			if tt.wantErr == "" {
				if err != nil || id != tt.wantID {
					t.Fatalf("Verify() = %q, %v; want %q, nil", id, err, tt.wantID)
				}
				return
			}
			if err == nil {
				t.Fatalf("Verify() = %q, nil; want an error containing %q", id, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Verify() error = %v; want ErrInvalidToken containing %q", err, tt.wantErr)
			}
			if id != "" {
				t.Errorf("Verify() returned id %q alongside an error", id)
			}
		})
	}
}

func TestJWTPrincipalClaimAndSingleKey(t *testing.T) {
	keys := newIssuerKeys(t)
	// A set with one key accepts tokens without kid; principal_claim picks
	// another claim.
	v := newTestVerifier(t, writeJWKS(t, jwksKey{pub: keys.ed.Public(), kid: "only"}), func(c *JWTConfig) { c.PrincipalClaim = "email" })
	c := claims("00u1abcd")
	c["email"] = "alice@example.com"
	tests := []struct {
		name, token, wantID, wantErr string
	}{
		{name: "no kid, single key", token: sign(t, jwa.EdDSA(), keys.ed, "", c), wantID: "alice@example.com"},
		{name: "claim missing", token: sign(t, jwa.EdDSA(), keys.ed, "only", claims("00u1abcd")), wantErr: `no "email" claim`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := v.Verify(tt.token)
			if tt.wantErr == "" {
				if err != nil || id != tt.wantID {
					t.Fatalf("Verify() = %q, %v; want %q", id, err, tt.wantID)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Verify() = %q, %v; want error containing %q", id, err, tt.wantErr)
			}
		})
	}
}

func TestJWKSLoading(t *testing.T) {
	keys := newIssuerKeys(t)
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	octJWKS := filepath.Join(t.TempDir(), "oct.json")
	if err := os.WriteFile(octJWKS, []byte(`{"keys":[{"kty":"oct","kid":"h","k":"c2VjcmV0"},`+
		strings.TrimPrefix(strings.TrimSuffix(readFile(t, writeJWKS(t, jwksKey{pub: &keys.rsa.PublicKey, kid: "rsa1"})), "]}"), `{"keys":[`)+`]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	// jwx itself refuses to export a short key, so write this one by hand.
	smallJWKS := filepath.Join(t.TempDir(), "small.json")
	if err := os.WriteFile(smallJWKS, []byte(`{"keys":[{"kty":"RSA","kid":"small","e":"AQAB","n":"`+
		base64.RawURLEncoding.EncodeToString(small.N.Bytes())+`"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	notJSON := filepath.Join(t.TempDir(), "bad.json")
	if err := os.WriteFile(notJSON, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		file    string
		wantErr string // "" = loads
		wantN   int    // usable keys
	}{
		{name: "three algorithms", file: keys.jwks(t), wantN: 3},
		{name: "private keys in the file are used as public", file: writeJWKS(t, jwksKey{pub: keys.rsa, kid: "rsa1"}), wantN: 1},
		{name: "encryption key skipped", file: writeJWKS(t, jwksKey{pub: &keys.rsa.PublicKey, kid: "enc", use: "enc"}, jwksKey{pub: keys.ed.Public(), kid: "ed1"}), wantN: 1},
		{name: "key declaring another algorithm skipped", file: writeJWKS(t, jwksKey{pub: &keys.rsa.PublicKey, kid: "ps", alg: "PS256"}, jwksKey{pub: keys.ed.Public(), kid: "ed1"}), wantN: 1},
		{name: "P-384 key skipped", file: writeJWKS(t, jwksKey{pub: &p384.PublicKey, kid: "p384"}, jwksKey{pub: keys.ed.Public(), kid: "ed1"}), wantN: 1},
		{name: "symmetric key refused", file: octJWKS, wantErr: "symmetric"},
		{name: "short RSA key refused", file: smallJWKS, wantErr: "2048"},
		{name: "nothing usable", file: writeJWKS(t, jwksKey{pub: &p384.PublicKey, kid: "p384"}), wantErr: "no RS256"},
		{name: "not JSON", file: notJSON, wantErr: "invalid JWKS"},
		{name: "missing file", file: filepath.Join(t.TempDir(), "nope.json"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewJWTVerifier(JWTConfig{Issuer: testIssuer, Audience: testAudience, JWKSFile: tt.file})
			if tt.wantErr != "" {
				if err == nil || !errors.Is(err, ErrInvalidJWKS) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewJWTVerifier(%s) = %v; want ErrInvalidJWKS containing %q", tt.name, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewJWTVerifier: %v", err)
			}
			if got := len(v.keys.Load().keys); got != tt.wantN {
				t.Errorf("usable keys = %d, want %d", got, tt.wantN)
			}
		})
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestJWKSReloadKeepsOldOnError(t *testing.T) {
	keys := newIssuerKeys(t)
	next := newIssuerKeys(t)
	file := writeJWKS(t, jwksKey{pub: &keys.rsa.PublicKey, kid: "k1"})
	v := newTestVerifier(t, file, nil)
	old := sign(t, jwa.RS256(), keys.rsa, "k1", claims("alice@example.com"))
	rotated := sign(t, jwa.RS256(), next.rsa, "k2", claims("alice@example.com"))

	if err := os.WriteFile(file, []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.ReloadKeys(file); err == nil {
		t.Fatal("ReloadKeys(broken file) = nil, want an error")
	}
	if _, err := v.Verify(old); err != nil {
		t.Fatalf("after a failed reload, Verify(old key) = %v; want the old key set kept", err)
	}
	if err := os.WriteFile(file, []byte(readFile(t, writeJWKS(t, jwksKey{pub: &next.rsa.PublicKey, kid: "k2"}))), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.ReloadKeys(file); err != nil {
		t.Fatalf("ReloadKeys: %v", err)
	}
	if _, err := v.Verify(rotated); err != nil {
		t.Errorf("Verify(rotated key) = %v, want ok", err)
	}
	if _, err := v.Verify(old); err == nil {
		t.Error("Verify(retired key) = ok, want an error")
	}
}

// TestAuthenticatorBearer runs the bearer-token path over real TLS: the token
// decides who calls, whatever certificate comes with it.
func TestAuthenticatorBearer(t *testing.T) {
	ca, err := pki.NewCA("ztp test CA")
	if err != nil {
		t.Fatal(err)
	}
	rules := append([]Rule{{Match: "*@example.com", Kind: KindHuman, Groups: []string{"sre"}}}, testRules...)
	classifier, err := NewClassifier(rules)
	if err != nil {
		t.Fatal(err)
	}
	keys := newIssuerKeys(t)
	v := newTestVerifier(t, keys.jwks(t), func(c *JWTConfig) { c.Now = time.Now })
	withJWT := NewAuthenticator(classifier, WithJWT(v))
	ifGiven := startEchoServer(t, ca, tls.VerifyClientCertIfGiven, withJWT)
	certOnly := startEchoServer(t, ca, tls.VerifyClientCertIfGiven, NewAuthenticator(classifier))

	deployer, err := ca.Issue(pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	live := func(sub string, mod func(map[string]any)) string {
		now := time.Now()
		c := claims(sub)
		c["iat"], c["nbf"], c["exp"] = now.Add(-time.Minute).Unix(), now.Add(-time.Minute).Unix(), now.Add(10*time.Minute).Unix()
		if mod != nil {
			mod(c)
		}
		return sign(t, jwa.ES256(), keys.ec, "ec1", c)
	}
	good := live("alice@example.com", nil)
	bearer := func(tok string) metadata.MD { return metadata.Pairs("authorization", "Bearer "+tok) }

	tests := []struct {
		name     string
		server   *echoServer
		cert     *pki.Leaf
		md       metadata.MD
		wantCode codes.Code
		wantID   string
		wantAuth string
		wantMsg  string
	}{
		{name: "token only", server: ifGiven, md: bearer(good), wantCode: codes.OK, wantID: "alice@example.com", wantAuth: AuthnJWT},
		{name: "lower-case scheme", server: ifGiven, md: metadata.Pairs("authorization", "bearer "+good), wantCode: codes.OK, wantID: "alice@example.com", wantAuth: AuthnJWT},
		{name: "token wins over certificate", server: ifGiven, cert: deployer, md: bearer(good), wantCode: codes.OK, wantID: "alice@example.com", wantAuth: AuthnJWT},
		{name: "invalid token with a valid certificate", server: ifGiven, cert: deployer, md: bearer(good[:len(good)-4] + "AAAA"), wantCode: codes.Unauthenticated, wantMsg: "invalid bearer token"},
		{name: "expired token with a valid certificate", server: ifGiven, cert: deployer,
			md: bearer(live("alice@example.com", func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })), wantCode: codes.Unauthenticated, wantMsg: "token expired"},
		{name: "empty bearer token", server: ifGiven, cert: deployer, md: metadata.Pairs("authorization", "Bearer "), wantCode: codes.Unauthenticated, wantMsg: "empty bearer token"},
		{name: "two authorization values", server: ifGiven, md: metadata.Pairs("authorization", "Bearer "+good, "authorization", "Basic eDp5"), wantCode: codes.Unauthenticated, wantMsg: "more than one"},
		{name: "token for a principal no rule matches", server: ifGiven, md: bearer(live("bob@other.org", nil)), wantCode: codes.Unauthenticated, wantMsg: `matches no rule: "bob@other.org"`},
		{name: "Basic authorization falls back to the certificate", server: ifGiven, cert: deployer, md: metadata.Pairs("authorization", "Basic eDp5"), wantCode: codes.OK, wantID: "spiffe://example.org/ns/prod/sa/deployer", wantAuth: AuthnMTLS},
		{name: "no token, certificate", server: ifGiven, cert: deployer, wantCode: codes.OK, wantID: "spiffe://example.org/ns/prod/sa/deployer", wantAuth: AuthnMTLS},
		{name: "no token, no certificate", server: ifGiven, wantCode: codes.Unauthenticated, wantMsg: "no verified client certificate"},
		{name: "JWT not configured: token ignored, no certificate", server: certOnly, md: bearer(good), wantCode: codes.Unauthenticated, wantMsg: "no verified client certificate"},
		{name: "JWT not configured: certificate decides", server: certOnly, cert: deployer, md: bearer(good), wantCode: codes.OK, wantID: "spiffe://example.org/ns/prod/sa/deployer", wantAuth: AuthnMTLS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			trailer, err := call(t, tt.server.addr, ca, tt.cert, tt.md)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("call: code %v (err %v), want %v", got, err, tt.wantCode)
			}
			if tt.wantMsg != "" && !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Errorf("status message %q, want it to contain %q", status.Convert(err).Message(), tt.wantMsg)
			}
			if tt.wantCode != codes.OK {
				return
			}
			if got := trailer.Get(trailerID); len(got) != 1 || got[0] != tt.wantID {
				t.Errorf("principal id = %q, want [%q]", got, tt.wantID)
			}
			if got := trailer.Get(trailerAuthn); len(got) != 1 || got[0] != tt.wantAuth {
				t.Errorf("authn = %q, want [%q]", got, tt.wantAuth)
			}
		})
	}
}

// FuzzJWTVerify feeds arbitrary tokens to the verifier: it must never panic,
// and whatever it accepts must carry the one principal the trusted key signed.
func FuzzJWTVerify(f *testing.F) {
	keys := newIssuerKeys(f)
	v := newTestVerifier(f, keys.jwks(f), nil)
	f.Add(sign(f, jwa.RS256(), keys.rsa, "rsa1", claims("alice@example.com")))
	f.Add(sign(f, jwa.ES256(), keys.ec, "ec1", claims("alice@example.com")))
	f.Add(sign(f, jwa.EdDSA(), keys.ed, "ed1", claims("alice@example.com")))
	f.Add(handMade(f, map[string]any{"alg": "none"}, claims("mallory@example.com"), nil))
	f.Add("eyJhbGciOiJIUzI1NiJ9.e30.")
	f.Add("..")
	f.Fuzz(func(t *testing.T, token string) {
		id, err := v.Verify(token)
		if err == nil && id != "alice@example.com" {
			t.Fatalf("Verify(%q) accepted principal %q, which no trusted key signed", token, id)
		}
		if err != nil && !errors.Is(err, ErrInvalidToken) {
			t.Fatalf("Verify(%q) error %v does not wrap ErrInvalidToken", token, err)
		}
	})
}

func BenchmarkJWTVerify(b *testing.B) {
	keys := newIssuerKeys(b)
	v := newTestVerifier(b, keys.jwks(b), nil)
	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"RS256", sign(b, jwa.RS256(), keys.rsa, "rsa1", claims("alice@example.com"))},
		{"ES256", sign(b, jwa.ES256(), keys.ec, "ec1", claims("alice@example.com"))},
		{"EdDSA", sign(b, jwa.EdDSA(), keys.ed, "ed1", claims("alice@example.com"))},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(tc.tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestBearerNeedsTLS: a token that crossed the wire in clear is refused, even
// when it is valid.
func TestBearerNeedsTLS(t *testing.T) {
	keys := newIssuerKeys(t)
	v := newTestVerifier(t, keys.jwks(t), nil)
	classifier, err := NewClassifier([]Rule{{Match: "*@example.com", Kind: KindHuman}})
	if err != nil {
		t.Fatal(err)
	}
	tok := sign(t, jwa.EdDSA(), keys.ed, "ed1", claims("alice@example.com"))
	md := metadata.Pairs("authorization", "Bearer "+tok)
	tests := []struct {
		name    string
		ai      credentials.AuthInfo
		wantErr string // "" = authenticated
	}{
		{"TLS", credentials.TLSInfo{State: tls.ConnectionState{HandshakeComplete: true}}, ""},
		{"insecure transport", plainAuthInfo{}, "not TLS"},
		{"no auth info", nil, "not TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, AuthInfo: tt.ai})
			ctx = metadata.NewIncomingContext(ctx, md)
			p, err := NewAuthenticator(classifier, WithJWT(v)).Authenticate(ctx)
			if tt.wantErr == "" {
				if err != nil || p.ID != "alice@example.com" || p.Authn != AuthnJWT {
					t.Fatalf("Authenticate = %+v, %v; want alice@example.com by jwt", p, err)
				}
				return
			}
			if !errors.Is(err, ErrInvalidToken) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Authenticate = %+v, %v; want ErrInvalidToken containing %q", p, err, tt.wantErr)
			}
		})
	}
}
