package identity

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Authenticator authenticates gRPC server calls. It is safe for concurrent
// use.
type Authenticator struct {
	classifier *Classifier
}

// NewAuthenticator returns an Authenticator that classifies callers with c.
// A nil c rejects every caller.
func NewAuthenticator(c *Classifier) *Authenticator {
	return &Authenticator{classifier: c}
}

// Authenticate identifies the caller of the gRPC call whose server context
// is ctx: peer → credentials.TLSInfo → FromTLS → Classify. Every error wraps
// ErrUnauthenticated and the specific cause, carries gRPC status
// UNAUTHENTICATED, and has a message fit for the client (no secrets).
//
// Incoming metadata is never read, so no header can assert an identity.
// Bearer tokens will plug in here: per the design, a request carrying
// "authorization: Bearer …" is identified by its token (an invalid token is
// UNAUTHENTICATED whatever certificate came with it), otherwise by the
// verified client certificate below. That token is the one piece of
// metadata this method will ever read.
func (a *Authenticator) Authenticate(ctx context.Context) (Principal, error) {
	id, err := idFromPeer(ctx)
	if err != nil {
		return Principal{}, unauthenticated(err)
	}
	var c *Classifier
	if a != nil {
		c = a.classifier
	}
	p, ok := c.Classify(id, AuthnMTLS) // a nil classifier matches nobody

	if !ok {
		return Principal{}, unauthenticated(fmt.Errorf("%w: %q", ErrUnknownPrincipal, clip(id)))
	}
	return p, nil
}

func idFromPeer(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p == nil {
		return "", fmt.Errorf("%w: no peer in context", ErrNoCertificate)
	}
	var info credentials.TLSInfo
	switch ai := p.AuthInfo.(type) {
	case credentials.TLSInfo:
		info = ai
	case *credentials.TLSInfo:
		if ai == nil {
			return "", fmt.Errorf("%w: connection is not TLS", ErrNoCertificate)
		}
		info = *ai
	default:
		return "", fmt.Errorf("%w: connection is not TLS", ErrNoCertificate)
	}
	// info.SPIFFEID is deliberately ignored: grpc-go derives it from
	// PeerCertificates, which may be unverified.
	return FromTLS(info.State)
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
