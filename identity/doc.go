// Package identity decides who is calling the proxy.
//
// Authentication is the first stage of every request: a caller the proxy
// cannot name is refused before any policy, rate limit or audit record is
// considered. The package turns a verified mTLS client certificate into a
// principal id, and classifies that id with ordered configuration rules into
// a Principal (kind automation|human, groups) that policies reason about.
//
// Principal ids have two forms:
//
//   - "spiffe://trust.domain/path" — the SPIFFE ID from the certificate's
//     URI SAN, validated per the SPIFFE specification (lowercase trust
//     domain of [a-z0-9-._], path segments of [a-zA-Z0-9-._] that are not
//     empty, "." or "..", no query, fragment, userinfo or port, at most
//     2048 bytes);
//   - "cn:" + the subject common name, when the certificate has no SPIFFE
//     ID. The prefix keeps a common name from ever posing as a SPIFFE ID.
//
// Guarantees, each of which fails closed:
//
//   - Only a verified chain is used (tls.ConnectionState.VerifiedChains);
//     PeerCertificates, which a server configured with RequireAnyClientCert
//     fills without verification, is never read. grpc-go's TLSInfo.SPIFFEID
//     is derived from PeerCertificates and is ignored for the same reason.
//   - A certificate with a SPIFFE ID must be a valid X509-SVID leaf: exactly
//     one URI SAN, an id with a path, not a CA, no certSign/cRLSign. If it
//     is not, it is rejected; it never falls back to the common name.
//   - A common name that is not printable UTF-8 is rejected, so ids are safe
//     to show in audit records and logs.
//   - Request metadata is never consulted: a client cannot claim an
//     identity with a header such as x-ztp-principal.
//   - A principal that matches no classification rule is unauthenticated.
//
// Humans may instead present a JWT bearer token ("authorization: Bearer …",
// see JWTVerifier). A call carrying one is identified by the token alone
// (an invalid token is refused whatever certificate came with it), and the
// token's principal claim is classified like a certificate's id, with Authn
// "jwt". Only RS256, ES256 and EdDSA signatures by a key of the configured
// JWKS are accepted — never "none" or HMAC — with exact issuer, audience,
// and exp/nbf within the configured leeway. Token ids may not start with
// "spiffe://" or "cn:", so a token can never pose as a certificate identity.
//
// A credential counts until Principal.Expires, the one expiry rule (see
// Expired): a token until exp plus the leeway, a certificate through its
// chain's earliest NotAfter. Authenticate applies it on every call, also on a
// connection opened before the certificate expired, and the proxy ends open
// calls at that instant with the same function.
//
// Authenticator.Authenticate is the single entry point for gRPC servers.
package identity
