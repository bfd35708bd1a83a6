package identity

import "errors"

var (
	// ErrNoCertificate is returned when there is no verified client
	// certificate: no TLS connection, an unfinished handshake, or a client
	// that presented no certificate or one that was not verified.
	ErrNoCertificate = errors.New("identity: no verified client certificate")

	// ErrInvalidSPIFFEID is returned when a string or a certificate's spiffe
	// URI SAN is not a valid SPIFFE ID, or when the certificate carrying it
	// is not a valid leaf SVID (a CA, a signing key usage, or an id without
	// a path).
	ErrInvalidSPIFFEID = errors.New("identity: invalid SPIFFE ID")

	// ErrAmbiguousSPIFFEID is returned when a certificate with a spiffe URI
	// SAN carries more than one URI SAN, so which identity it asserts is
	// ambiguous (X509-SVID §2 requires exactly one).
	ErrAmbiguousSPIFFEID = errors.New("identity: certificate with a SPIFFE ID has more than one URI SAN")

	// ErrNoIdentity is returned when a certificate has no SPIFFE ID and its
	// subject common name is empty or not printable UTF-8.
	ErrNoIdentity = errors.New("identity: certificate names no usable identity")

	// ErrInvalidRule is returned when NewClassifier is given a malformed
	// rule: an empty or invalid glob, an unknown kind, or an empty group.
	ErrInvalidRule = errors.New("identity: invalid principal rule")

	// ErrUnknownPrincipal is returned when an authenticated id matches no
	// classification rule; such callers are refused.
	ErrUnknownPrincipal = errors.New("identity: principal matches no rule")

	// ErrInvalidToken is returned when a bearer token is refused: not a
	// compact JWS, an algorithm other than RS256, ES256 or EdDSA (so "none"
	// and HMAC), an unknown key id, a bad signature, a wrong issuer or
	// audience, expired or not yet valid (beyond the leeway), or a
	// principal claim that is missing, not a string, or in a namespace
	// reserved for certificates.
	ErrInvalidToken = errors.New("identity: invalid bearer token")

	// ErrExpired is returned (as an *ExpiredError naming the instant) when
	// the credential that proved the id no longer counts: a client
	// certificate past its NotAfter on a connection opened before, or a
	// token past exp plus the leeway. See Expired for the one rule.
	ErrExpired = errors.New("identity: credentials expired")

	// ErrInvalidJWKS is returned when the JWKS file cannot be read or holds
	// no usable signature key, or holds a symmetric key.
	ErrInvalidJWKS = errors.New("identity: invalid JWKS")

	// ErrUnauthenticated is returned (wrapping the specific cause above) by
	// Authenticator.Authenticate whenever a caller cannot be authenticated.
	// The error also carries gRPC status UNAUTHENTICATED, so a handler may
	// return it unchanged.
	ErrUnauthenticated = errors.New("unauthenticated")
)
