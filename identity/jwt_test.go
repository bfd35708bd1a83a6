package identity

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
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
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/internal/testjwt"
	"github.com/ztp-dev/ztp/pki"
)

// testNow is the fixed instant every token in these tests is checked at.
var testNow = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

// claims returns valid claims for sub at testNow; tests change what they test.
func claims(sub string) map[string]any { return testjwt.Claims(sub, testNow) }

func newTestVerifier(t testing.TB, jwksFile string, mod func(*JWTConfig)) *JWTVerifier {
	t.Helper()
	cfg := JWTConfig{
		Issuer: testjwt.Issuer, Audience: testjwt.Audience, JWKSFile: jwksFile,
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
	keys := testjwt.NewKeys(t)
	other := testjwt.NewKeys(t) // same kids, keys the proxy does not trust
	v := newTestVerifier(t, keys.JWKS(t), nil)

	with := func(mod func(map[string]any)) map[string]any {
		c := claims("alice@example.com")
		mod(c)
		return c
	}
	rsaPubDER, err := x509.MarshalPKIXPublicKey(&keys.RSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaJWK, err := jwk.Import(&keys.RSA.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaJWKJSON, _ := json.Marshal(rsaJWK)
	rsaSign := func(in []byte) []byte {
		d := sha256.Sum256(in)
		s, err := rsa.SignPKCS1v15(rand.Reader, keys.RSA, crypto.SHA256, d[:])
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", claims("alice@example.com"))
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
		{name: "ES256", token: testjwt.Sign(t, jwa.ES256(), keys.EC, "ec1", claims("alice@example.com")), wantID: "alice@example.com"},
		{name: "EdDSA", token: testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "ed1", claims("alice@example.com")), wantID: "alice@example.com"},
		{name: "audience as a plain string", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["aud"] = testjwt.Audience })), wantID: "alice@example.com"},
		{name: "one of several audiences", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["aud"] = []string{"other", testjwt.Audience} })), wantID: "alice@example.com"},
		{name: "expired within leeway", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["exp"] = testNow.Add(-20 * time.Second).Unix() })), wantID: "alice@example.com"},
		{name: "not before within leeway", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["nbf"] = testNow.Add(20 * time.Second).Unix() })), wantID: "alice@example.com"},

		{name: "expired", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["exp"] = testNow.Add(-31 * time.Second).Unix() })), wantErr: "token expired"},
		{name: "not yet valid", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["nbf"] = testNow.Add(time.Minute).Unix() })), wantErr: "not valid yet"},
		{name: "no exp", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { delete(c, "exp") })), wantErr: "required claim"},
		{name: "wrong audience", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["aud"] = []string{"other"} })), wantErr: "wrong audience"},
		{name: "no audience", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { delete(c, "aud") })), wantErr: "audience"},
		{name: "wrong issuer", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["iss"] = "https://evil.example.com" })), wantErr: "wrong issuer"},
		{name: "issuer differs by a trailing slash", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", with(func(c map[string]any) { c["iss"] = testjwt.Issuer + "/" })), wantErr: "wrong issuer"},
		{name: "signed by an untrusted key with a trusted kid", token: testjwt.Sign(t, jwa.RS256(), other.RSA, "rsa1", claims("alice@example.com")), wantErr: "bad signature"},
		{name: "claims tampered after signing", token: tampered, wantErr: "bad signature"},
		{name: "unknown kid", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa9", claims("alice@example.com")), wantErr: `unknown key id "rsa9"`},
		{name: "no kid with several keys", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "", claims("alice@example.com")), wantErr: "no kid"},
		{name: "alg of another key type", token: testjwt.Sign(t, jwa.ES256(), keys.EC, "rsa1", claims("alice@example.com")), wantErr: "does not match"},
		{name: "alg none", token: testjwt.HandMade(map[string]any{"alg": "none", "typ": "JWT"}, claims("alice@example.com"), nil), wantErr: `"none" is not accepted`},
		{name: "alg none with kid", token: testjwt.HandMade(map[string]any{"alg": "none", "kid": "rsa1"}, claims("alice@example.com"), nil), wantErr: `"none" is not accepted`},
		{name: "alg NONE", token: testjwt.HandMade(map[string]any{"alg": "NONE"}, claims("alice@example.com"), nil), wantErr: "not accepted"},
		{name: "HS256 keyed with the RSA public key (DER)", token: testjwt.HandMade(map[string]any{"alg": "HS256", "kid": "rsa1"}, claims("alice@example.com"), testjwt.HMAC(rsaPubDER)), wantErr: `"HS256" is not accepted`},
		{name: "HS256 keyed with the RSA public JWK", token: testjwt.HandMade(map[string]any{"alg": "HS256", "kid": "rsa1"}, claims("alice@example.com"), testjwt.HMAC(rsaJWKJSON)), wantErr: `"HS256" is not accepted`},
		{name: "HS512", token: testjwt.HandMade(map[string]any{"alg": "HS512", "kid": "rsa1"}, claims("alice@example.com"), testjwt.HMAC([]byte("x"))), wantErr: "not accepted"},
		{name: "RS384", token: testjwt.HandMade(map[string]any{"alg": "RS384", "kid": "rsa1"}, claims("alice@example.com"), rsaSign), wantErr: "not accepted"},
		{name: "no alg", token: testjwt.HandMade(map[string]any{"kid": "rsa1"}, claims("alice@example.com"), rsaSign), wantErr: "alg"},
		{name: "hand-made RS256 is fine", token: testjwt.HandMade(map[string]any{"alg": "RS256", "kid": "rsa1"}, claims("alice@example.com"), rsaSign), wantID: "alice@example.com"},
		{name: "unknown critical header", token: testjwt.HandMade(map[string]any{"alg": "RS256", "kid": "rsa1", "crit": []string{"x-must-know"}, "x-must-know": 1}, claims("alice@example.com"), rsaSign), wantErr: "bad signature"},
		{name: "sub not a string", token: testjwt.HandMade(map[string]any{"alg": "RS256", "kid": "rsa1"}, with(func(c map[string]any) { c["sub"] = 42 }), rsaSign), wantErr: "invalid token"},
		{name: "sub poses as a SPIFFE ID", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", claims("spiffe://example.org/ns/prod/sa/deployer")), wantErr: "reserved for certificates"},
		{name: "sub poses as a certificate CN", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", claims("cn:alice")), wantErr: "reserved for certificates"},
		{name: "sub with a control character", token: testjwt.Sign(t, jwa.RS256(), keys.RSA, "rsa1", claims("alice\n@example.com")), wantErr: "printable"},
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
	keys := testjwt.NewKeys(t)
	// A set with one key accepts tokens without kid; principal_claim picks
	// another claim.
	v := newTestVerifier(t, testjwt.WriteJWKS(t, testjwt.Key{Public: keys.Ed.Public(), KID: "only"}), func(c *JWTConfig) { c.PrincipalClaim = "email" })
	c := claims("00u1abcd")
	c["email"] = "alice@example.com"
	tests := []struct {
		name, token, wantID, wantErr string
	}{
		{name: "no kid, single key", token: testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "", c), wantID: "alice@example.com"},
		{name: "claim missing", token: testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "only", claims("00u1abcd")), wantErr: `no "email" claim`},
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
	keys := testjwt.NewKeys(t)
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
		strings.TrimPrefix(strings.TrimSuffix(readFile(t, testjwt.WriteJWKS(t, testjwt.Key{Public: &keys.RSA.PublicKey, KID: "rsa1"})), "]}"), `{"keys":[`)+`]}`), 0o644); err != nil {
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
		{name: "three algorithms", file: keys.JWKS(t), wantN: 3},
		{name: "private keys in the file are used as public", file: testjwt.WriteJWKS(t, testjwt.Key{Public: keys.RSA, KID: "rsa1"}), wantN: 1},
		{name: "encryption key skipped", file: testjwt.WriteJWKS(t, testjwt.Key{Public: &keys.RSA.PublicKey, KID: "enc", Use: "enc"}, testjwt.Key{Public: keys.Ed.Public(), KID: "ed1"}), wantN: 1},
		{name: "key declaring another algorithm skipped", file: testjwt.WriteJWKS(t, testjwt.Key{Public: &keys.RSA.PublicKey, KID: "ps", Alg: "PS256"}, testjwt.Key{Public: keys.Ed.Public(), KID: "ed1"}), wantN: 1},
		{name: "P-384 key skipped", file: testjwt.WriteJWKS(t, testjwt.Key{Public: &p384.PublicKey, KID: "p384"}, testjwt.Key{Public: keys.Ed.Public(), KID: "ed1"}), wantN: 1},
		{name: "symmetric key refused", file: octJWKS, wantErr: "symmetric"},
		{name: "short RSA key refused", file: smallJWKS, wantErr: "2048"},
		{name: "nothing usable", file: testjwt.WriteJWKS(t, testjwt.Key{Public: &p384.PublicKey, KID: "p384"}), wantErr: "no RS256"},
		{name: "not JSON", file: notJSON, wantErr: "invalid JWKS"},
		{name: "missing file", file: filepath.Join(t.TempDir(), "nope.json"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, err := NewJWTVerifier(JWTConfig{Issuer: testjwt.Issuer, Audience: testjwt.Audience, JWKSFile: tt.file})
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
	keys := testjwt.NewKeys(t)
	next := testjwt.NewKeys(t)
	file := testjwt.WriteJWKS(t, testjwt.Key{Public: &keys.RSA.PublicKey, KID: "k1"})
	v := newTestVerifier(t, file, nil)
	old := testjwt.Sign(t, jwa.RS256(), keys.RSA, "k1", claims("alice@example.com"))
	rotated := testjwt.Sign(t, jwa.RS256(), next.RSA, "k2", claims("alice@example.com"))

	if err := os.WriteFile(file, []byte("{broken"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := v.ReloadKeys(file); err == nil {
		t.Fatal("ReloadKeys(broken file) = nil, want an error")
	}
	if _, err := v.Verify(old); err != nil {
		t.Fatalf("after a failed reload, Verify(old key) = %v; want the old key set kept", err)
	}
	if err := os.WriteFile(file, []byte(readFile(t, testjwt.WriteJWKS(t, testjwt.Key{Public: &next.RSA.PublicKey, KID: "k2"}))), 0o644); err != nil {
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
	keys := testjwt.NewKeys(t)
	v := newTestVerifier(t, keys.JWKS(t), func(c *JWTConfig) { c.Now = time.Now })
	withJWT := NewAuthenticator(classifier, WithJWT(v))
	ifGiven := startEchoServer(t, ca, tls.VerifyClientCertIfGiven, withJWT)
	certOnly := startEchoServer(t, ca, tls.VerifyClientCertIfGiven, NewAuthenticator(classifier))

	deployer, err := ca.Issue(pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	live := func(sub string, mod func(map[string]any)) string {
		c := testjwt.Claims(sub, time.Now())
		if mod != nil {
			mod(c)
		}
		return testjwt.Sign(t, jwa.ES256(), keys.EC, "ec1", c)
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
	keys := testjwt.NewKeys(f)
	v := newTestVerifier(f, keys.JWKS(f), nil)
	f.Add(testjwt.Sign(f, jwa.RS256(), keys.RSA, "rsa1", claims("alice@example.com")))
	f.Add(testjwt.Sign(f, jwa.ES256(), keys.EC, "ec1", claims("alice@example.com")))
	f.Add(testjwt.Sign(f, jwa.EdDSA(), keys.Ed, "ed1", claims("alice@example.com")))
	f.Add(testjwt.HandMade(map[string]any{"alg": "none"}, claims("mallory@example.com"), nil))
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
	keys := testjwt.NewKeys(b)
	v := newTestVerifier(b, keys.JWKS(b), nil)
	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"RS256", testjwt.Sign(b, jwa.RS256(), keys.RSA, "rsa1", claims("alice@example.com"))},
		{"ES256", testjwt.Sign(b, jwa.ES256(), keys.EC, "ec1", claims("alice@example.com"))},
		{"EdDSA", testjwt.Sign(b, jwa.EdDSA(), keys.Ed, "ed1", claims("alice@example.com"))},
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
	keys := testjwt.NewKeys(t)
	v := newTestVerifier(t, keys.JWKS(t), nil)
	classifier, err := NewClassifier([]Rule{{Match: "*@example.com", Kind: KindHuman}})
	if err != nil {
		t.Fatal(err)
	}
	tok := testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "ed1", claims("alice@example.com"))
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
