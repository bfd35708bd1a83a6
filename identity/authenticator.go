package identity

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Authenticator authenticates gRPC server calls. It is safe for concurrent
// use.
type Authenticator struct {
	classifier atomic.Pointer[Classifier]
	jwt        *JWTVerifier     // nil: bearer tokens are not accepted
	now        func() time.Time // checks certificate expiry; tokens use the verifier's clock
}

// SetClassifier replaces the principal rules (config reload); calls being
// authenticated concurrently use either the old or the new rules, never a mix.
func (a *Authenticator) SetClassifier(c *Classifier) { a.classifier.Store(c) }

// PersonOf returns the person the principal rules in force name for id, or ""
// when no rule matches or the matching rule names none.
func (a *Authenticator) PersonOf(id string) string {
	p, _ := a.classifier.Load().Classify(id, "")
	return p.Person
}

// Option adds an authentication method to an Authenticator.
type Option func(*Authenticator)

// WithJWT makes the Authenticator identify calls that carry
// "authorization: Bearer …" by that token, checked by v.
func WithJWT(v *JWTVerifier) Option {
	return func(a *Authenticator) { a.jwt = v }
}

// WithClock sets the clock certificate expiry is checked against (default
// time.Now). Bearer tokens are checked against their verifier's clock.
func WithClock(now func() time.Time) Option {
	return func(a *Authenticator) { a.now = now }
}

// NewAuthenticator returns an Authenticator that classifies callers with c.
// A nil c rejects every caller.
func NewAuthenticator(c *Classifier, opts ...Option) *Authenticator {
	a := &Authenticator{now: time.Now}
	a.classifier.Store(c)
	for _, o := range opts {
		o(a)
	}
	return a
}

// Authenticate identifies the caller of the gRPC call whose server context
// is ctx and classifies it. Every error wraps ErrUnauthenticated and the
// specific cause, carries gRPC status UNAUTHENTICATED, and has a message fit
// for the client (no secrets).
//
// With WithJWT, a call carrying "authorization: Bearer …" is identified by
// its token alone: an invalid token is refused whatever certificate came
// with it, and the principal's Authn is AuthnJWT. Otherwise (and always
// without WithJWT, where the header is ignored) the caller is identified by
// the verified client certificate: peer → credentials.TLSInfo → FromTLS.
// The authorization header is the one piece of metadata ever read, so no
// other header can assert an identity.
func (a *Authenticator) Authenticate(ctx context.Context) (Principal, error) {
	var c *Classifier
	if a != nil {
		c = a.classifier.Load()
		if a.jwt != nil {
			if tok, ok, err := bearerToken(ctx); ok {
				if err != nil {
					return Principal{}, unauthenticated(err)
				}
				return a.authenticateToken(ctx, c, tok)
			}
		}
	}
	id, err := idFromPeer(ctx)
	if err != nil {
		return Principal{}, unauthenticated(err)
	}
	p, ok := c.Classify(id, AuthnMTLS) // a nil classifier matches nobody

	if !ok {
		return Principal{}, unauthenticated(fmt.Errorf("%w: %q", ErrUnknownPrincipal, clip(id)))
	}
	p.Expires = certExpiry(ctx)
	// The handshake checked the chain once per connection; a connection
	// outlives its certificate, and every call on it is checked again here.
	now := time.Now
	if a != nil && a.now != nil {
		now = a.now
	}
	if err := checkExpiry(p, now()); err != nil {
		return Principal{}, unauthenticated(err)
	}
	return p, nil
}

// certExpiry is when the verified client chain stops counting (chainExpires;
// zero when unknown).
func certExpiry(ctx context.Context) time.Time {
	info, err := tlsInfo(ctx)
	if err != nil || len(info.State.VerifiedChains) == 0 {
		return time.Time{}
	}
	return chainExpires(info.State.VerifiedChains[0])
}

func (a *Authenticator) authenticateToken(ctx context.Context, c *Classifier, tok string) (Principal, error) {
	// A token is a password: never accept one that crossed the wire in clear.
	if _, err := tlsInfo(ctx); err != nil {
		return Principal{}, unauthenticated(fmt.Errorf("%w: bearer token over a connection that is not TLS", ErrInvalidToken))
	}
	id, exp, err := a.jwt.VerifyExpiry(tok)
	if err != nil {
		return Principal{}, unauthenticated(err)
	}
	p, ok := c.Classify(id, AuthnJWT)
	if !ok {
		return Principal{}, unauthenticated(fmt.Errorf("%w: %q", ErrUnknownPrincipal, clip(id)))
	}
	p.Expires = exp
	return p, nil
}

// bearerToken returns the token of an "authorization: Bearer …" header; ok
// is false when the call carries none. Several authorization values, one of
// them a bearer token, are refused: which one identifies the caller would be
// ambiguous.
func bearerToken(ctx context.Context) (tok string, ok bool, err error) {
	md, _ := metadata.FromIncomingContext(ctx)
	vals := md.Get("authorization")
	for _, v := range vals {
		scheme, rest, _ := strings.Cut(v, " ")
		if !strings.EqualFold(scheme, "bearer") {
			continue
		}
		if len(vals) > 1 {
			return "", true, fmt.Errorf("%w: more than one authorization header", ErrInvalidToken)
		}
		rest = strings.TrimSpace(rest)
		if rest == "" {
			return "", true, fmt.Errorf("%w: empty bearer token", ErrInvalidToken)
		}
		return rest, true, nil
	}
	return "", false, nil
}

func idFromPeer(ctx context.Context) (string, error) {
	info, err := tlsInfo(ctx)
	if err != nil {
		return "", err
	}
	// info.SPIFFEID is deliberately ignored: grpc-go derives it from
	// PeerCertificates, which may be unverified.
	return FromTLS(info.State)
}

func tlsInfo(ctx context.Context) (credentials.TLSInfo, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p == nil {
		return credentials.TLSInfo{}, fmt.Errorf("%w: no peer in context", ErrNoCertificate)
	}
	switch ai := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		return ai, nil
	case *credentials.TLSInfo:
		if ai != nil {
			return *ai, nil
		}
	}
	return credentials.TLSInfo{}, fmt.Errorf("%w: connection is not TLS", ErrNoCertificate)
}

// authError is what Authenticate returns: it matches ErrUnauthenticated and
// its cause with errors.Is, and gives status.FromError the code
// UNAUTHENTICATED, so returning it from a handler unchanged is correct.
type authError struct {
	cause error
}

func unauthenticated(cause error) error { return &authError{cause: cause} }

func (e *authError) Error() string   { return ErrUnauthenticated.Error() + ": " + e.cause.Error() }
func (e *authError) Unwrap() []error { return []error{ErrUnauthenticated, e.cause} }

// GRPCStatus lets status.FromError and status.Code report UNAUTHENTICATED.
func (e *authError) GRPCStatus() *status.Status {
	return status.New(codes.Unauthenticated, e.Error())
}
