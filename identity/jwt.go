package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"
)

// AuthnJWT is the Principal.Authn value of callers identified by a bearer token.
const AuthnJWT = "jwt"

// Token algorithms accepted, and nothing else: "none" and every HMAC
// algorithm are refused whatever the JWKS holds, because a verifier that
// lets the token pick a symmetric algorithm can be fooled into using a
// public key as an HMAC secret.
const (
	algRS256 = "RS256"
	algES256 = "ES256"
	algEdDSA = "EdDSA"
)

// Bounds on untrusted input, so that a hostile token costs little to refuse.
const (
	maxTokenBytes     = 16 << 10
	maxJWKSBytes      = 1 << 20
	maxPrincipalBytes = 2048
	minRSABits        = 2048
)

// JWTConfig configures bearer-token authentication.
type JWTConfig struct {
	Issuer   string // exact "iss"
	Audience string // must be one of "aud"
	// JWKSFile holds the issuer's public keys (a JSON Web Key Set).
	JWKSFile string
	// PrincipalClaim names the claim whose string value is the principal id
	// (default "sub").
	PrincipalClaim string
	// Leeway is the clock skew allowed on exp, nbf and iat (0: none).
	Leeway time.Duration
	// Now is the clock tokens are checked against (default time.Now).
	Now func() time.Time
}

// JWTVerifier checks bearer tokens against one issuer's key set. It is safe
// for concurrent use; ReloadKeys swaps the key set atomically.
type JWTVerifier struct {
	cfg  JWTConfig
	keys atomic.Pointer[keySet]
}

// verifyKey is one usable public key, bound to the single algorithm its
// type allows.
type verifyKey struct {
	kid string
	alg jwa.SignatureAlgorithm
	pub any // *rsa.PublicKey, *ecdsa.PublicKey (P-256) or ed25519.PublicKey
}

type keySet struct {
	keys []verifyKey
}

// NewJWTVerifier validates cfg and loads the key set from cfg.JWKSFile.
// Errors wrap ErrInvalidJWKS when the file is unusable.
func NewJWTVerifier(cfg JWTConfig) (*JWTVerifier, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("identity: JWT issuer and audience are required")
	}
	if cfg.Leeway < 0 {
		return nil, errors.New("identity: JWT leeway must not be negative")
	}
	if cfg.PrincipalClaim == "" {
		cfg.PrincipalClaim = "sub"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	v := &JWTVerifier{cfg: cfg}
	if err := v.ReloadKeys(cfg.JWKSFile); err != nil {
		return nil, err
	}
	return v, nil
}

// ReloadKeys reads the key set at file and makes it the one tokens are
// checked against (key rotation). On error the previous key set stays.
func (v *JWTVerifier) ReloadKeys(file string) error {
	data, err := readLimited(file, maxJWKSBytes)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidJWKS, err)
	}
	ks, err := parseJWKS(data)
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidJWKS, file, err)
	}
	v.keys.Store(ks)
	return nil
}

func readLimited(file string, limit int64) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Size() > limit {
		return nil, fmt.Errorf("%s: larger than %d bytes", file, limit)
	}
	return os.ReadFile(file)
}

// parseJWKS keeps the signature keys whose type allows one of the accepted
// algorithms. A symmetric key is an error rather than something to skip:
// it is a secret in a file meant to be public, and a sign of confusion.
func parseJWKS(data []byte) (*keySet, error) {
	set, err := jwk.Parse(data)
	if err != nil {
		return nil, err
	}
	ks := &keySet{}
	for i := range set.Len() {
		k, _ := set.Key(i)
		kid, _ := k.KeyID()
		name := fmt.Sprintf("key %d (kid %q)", i, kid)
		if k.KeyType() == jwa.OctetSeq() {
			return nil, fmt.Errorf("%s is symmetric (kty oct): HMAC tokens are never accepted; remove it", name)
		}
		if use, ok := k.KeyUsage(); ok && use != string(jwk.ForSignature) {
			continue // an encryption key
		}
		raw, err := jwk.PublicRawKeyOf(k)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		vk := verifyKey{kid: kid, pub: raw}
		switch pub := raw.(type) {
		case *rsa.PublicKey:
			if pub.N.BitLen() < minRSABits {
				return nil, fmt.Errorf("%s: RSA key of %d bits; at least %d required", name, pub.N.BitLen(), minRSABits)
			}
			vk.alg = jwa.RS256()
		case *ecdsa.PublicKey:
			if pub.Curve != elliptic.P256() {
				continue // ES384/ES512 keys: their algorithms are not accepted
			}
			vk.alg = jwa.ES256()
		case ed25519.PublicKey:
			vk.alg = jwa.EdDSA()
		default:
			continue
		}
		// A key that declares another algorithm must never verify with ours.
		if a, ok := k.Algorithm(); ok && a.String() != vk.alg.String() {
			continue
		}
		ks.keys = append(ks.keys, vk)
	}
	if len(ks.keys) == 0 {
		return nil, errors.New("no RS256 (RSA ≥ 2048 bits), ES256 (P-256) or EdDSA (Ed25519) signature key")
	}
	return ks, nil
}

// Verify checks token (the text after "Bearer ") and returns the principal
// id it asserts. Every error wraps ErrInvalidToken, with a cause fit for the
// client: no key material or token contents beyond the failing check.
func (v *JWTVerifier) Verify(token string) (string, error) {
	id, _, err := v.VerifyExpiry(token)
	return id, err
}

// VerifyExpiry is Verify that also returns when the token stops counting:
// its exp plus the leeway, the Principal.Expires of its caller (see Expired).
func (v *JWTVerifier) VerifyExpiry(token string) (string, time.Time, error) {
	id, exp, err := v.verify(token)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("%w: %w", ErrInvalidToken, err)
	}
	return id, exp, nil
}

func (v *JWTVerifier) verify(token string) (string, time.Time, error) {
	if len(token) > maxTokenBytes {
		return "", time.Time{}, fmt.Errorf("longer than %d bytes", maxTokenBytes)
	}
	// Compact serialization only: three base64url parts. The JSON
	// serialization could carry several signatures and unprotected headers.
	if strings.Count(token, ".") != 2 || strings.ContainsAny(token, " \t\r\n{") {
		return "", time.Time{}, errors.New("not a compact JWS")
	}
	// The algorithm is checked before any key is chosen or any signature
	// is computed: the token does not get to choose how it is verified.
	var h struct {
		Alg *string `json:"alg"`
		Kid string  `json:"kid"`
	}
	hb, err := base64.RawURLEncoding.DecodeString(token[:strings.IndexByte(token, '.')])
	if err != nil || json.Unmarshal(hb, &h) != nil {
		return "", time.Time{}, errors.New("malformed header")
	}
	if h.Alg == nil {
		return "", time.Time{}, errors.New("no alg in the protected header")
	}
	switch *h.Alg {
	case algRS256, algES256, algEdDSA:
	default:
		return "", time.Time{}, fmt.Errorf("algorithm %q is not accepted (RS256, ES256, EdDSA only)", clip(*h.Alg))
	}
	key, err := v.keys.Load().lookup(h.Kid, *h.Alg)
	if err != nil {
		return "", time.Time{}, err
	}
	tok, err := jwt.Parse([]byte(token),
		jwt.WithKey(key.alg, key.pub),
		jwt.WithIssuer(v.cfg.Issuer),
		jwt.WithAudience(v.cfg.Audience),
		jwt.WithRequiredClaim("exp"),
		jwt.WithAcceptableSkew(v.cfg.Leeway),
		jwt.WithClock(jwt.ClockFunc(v.cfg.Now)),
	)
	if err != nil {
		return "", time.Time{}, claimError(err)
	}
	var id any
	if err := tok.Get(v.cfg.PrincipalClaim, &id); err != nil {
		return "", time.Time{}, fmt.Errorf("no %q claim", clip(v.cfg.PrincipalClaim))
	}
	s, ok := id.(string)
	if !ok {
		return "", time.Time{}, fmt.Errorf("claim %q is not a string", clip(v.cfg.PrincipalClaim))
	}
	if err := checkTokenPrincipal(s); err != nil {
		return "", time.Time{}, fmt.Errorf("claim %q: %w", clip(v.cfg.PrincipalClaim), err)
	}
	// jwx checked exp against its clock truncated to the second, which is
	// never stricter than the rule below; this check is the one that binds,
	// so a token counts at connection exactly as long as on a stream.
	exp, _ := tok.Expiration()
	expires := tokenExpires(exp, v.cfg.Leeway)
	if Expired(expires, v.cfg.Now()) {
		return "", time.Time{}, errors.New("token expired")
	}
	return s, expires, nil
}

// lookup finds the key a token names. Without a kid the token is accepted
// only when the set holds a single key, so a signature is never tried
// against several keys.
func (ks *keySet) lookup(kid, alg string) (verifyKey, error) {
	var found *verifyKey
	switch {
	case kid != "":
		for i := range ks.keys {
			if ks.keys[i].kid == kid {
				found = &ks.keys[i]
				break
			}
		}
		if found == nil {
			return verifyKey{}, fmt.Errorf("unknown key id %q", clip(kid))
		}
	case len(ks.keys) == 1:
		found = &ks.keys[0]
	default:
		return verifyKey{}, errors.New("no kid, and the key set holds several keys")
	}
	if found.alg.String() != alg {
		return verifyKey{}, fmt.Errorf("algorithm %s does not match the key's %s", alg, found.alg)
	}
	return *found, nil
}

// claimError names which check failed without echoing jwx's wording.
func claimError(err error) error {
	switch {
	case errors.Is(err, jwt.TokenExpiredError()):
		return errors.New("token expired")
	case errors.Is(err, jwt.TokenNotYetValidError()):
		return errors.New("token not valid yet")
	case errors.Is(err, jwt.InvalidIssuedAtError()):
		return errors.New("token issued in the future")
	case errors.Is(err, jwt.InvalidIssuerError()):
		return errors.New("wrong issuer")
	case errors.Is(err, jwt.InvalidAudienceError()):
		return errors.New("wrong audience")
	case errors.Is(err, jwt.MissingRequiredClaimError()):
		return errors.New("missing a required claim (exp)")
	case errors.Is(err, jws.VerifyError()):
		return errors.New("bad signature")
	default:
		return errors.New("invalid token")
	}
}

// checkTokenPrincipal keeps token ids out of the namespaces certificates own,
// so a token can never pose as a SPIFFE workload or a certificate common
// name, and keeps ids printable for audit records and logs.
func checkTokenPrincipal(id string) error {
	switch {
	case id == "":
		return errors.New("empty")
	case len(id) > maxPrincipalBytes:
		return fmt.Errorf("longer than %d bytes", maxPrincipalBytes)
	case !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return errors.New("not printable UTF-8")
	case strings.HasPrefix(strings.ToLower(id), "spiffe://"), strings.HasPrefix(id, "cn:"):
		return fmt.Errorf("%q is in a namespace reserved for certificates (spiffe://, cn:)", clip(id))
	}
	return nil
}
