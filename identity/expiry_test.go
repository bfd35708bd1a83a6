package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/lestrrat-go/jwx/v3/jwa"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/internal/testjwt"
)

func TestExpired(t *testing.T) {
	at := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name    string
		expires time.Time
		now     time.Time
		want    bool
	}{
		{"before", at, at.Add(-time.Nanosecond), false},
		{"at the instant", at, at, true},
		{"after", at, at.Add(time.Nanosecond), true},
		{"no expiry", time.Time{}, at, false},
	} {
		if got := Expired(tt.expires, tt.now); got != tt.want {
			t.Errorf("%s: Expired(%v, %v) = %v, want %v", tt.name, tt.expires, tt.now, got, tt.want)
		}
	}
}

// TestTokenLeewaySameEverywhere: a token counts at connection (Verify)
// exactly while the rule that ends streams (Expired on the principal's
// Expires) says it counts, at every instant around exp plus the leeway,
// whole and fractional leeways alike. Before the one rule, Expires was exp
// itself, so a token inside its leeway was accepted at connection and
// refused at its first message.
func TestTokenLeewaySameEverywhere(t *testing.T) {
	keys := testjwt.NewKeys(t)
	exp := testNow.Add(10 * time.Minute)
	tok := testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "ed1", claims("alice@example.com"))
	for _, leeway := range []time.Duration{0, 30 * time.Second, 1500 * time.Millisecond} {
		end := exp.Add(leeway)
		for _, d := range []time.Duration{-2 * time.Second, -time.Second, -500 * time.Millisecond, -time.Nanosecond, 0, time.Nanosecond, 400 * time.Millisecond, time.Second} {
			now := end.Add(d)
			v := newTestVerifier(t, keys.JWKS(t), func(c *JWTConfig) {
				c.Leeway = leeway
				c.Now = func() time.Time { return now }
			})
			_, expires, err := v.VerifyExpiry(tok)
			counts := !Expired(end, now)
			if counts != (err == nil) {
				t.Errorf("leeway %v, now exp+leeway%+v: VerifyExpiry error %v, but Expired says counts=%v", leeway, d, err, counts)
			}
			if err == nil && !expires.Equal(end) {
				t.Errorf("leeway %v: Expires = %v, want exp+leeway %v", leeway, expires, end)
			}
			if err != nil && !strings.Contains(err.Error(), "token expired") {
				t.Errorf("leeway %v, now exp+leeway%+v: error %v, want token expired", leeway, d, err)
			}
		}
	}
}

// TestCertificateExpiryOnOpenConnection: the TLS handshake checks a client
// certificate once per connection; a call on a connection that outlived the
// certificate is refused by Authenticate, at the same instant crypto/x509
// would refuse the chain (validity includes NotAfter itself).
func TestCertificateExpiryOnOpenConnection(t *testing.T) {
	classifier, err := NewClassifier([]Rule{{Match: "cn:*", Kind: KindHuman}})
	if err != nil {
		t.Fatal(err)
	}
	notAfter := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}, NotAfter: notAfter}
	ca := &x509.Certificate{Subject: pkix.Name{CommonName: "CA"}, NotAfter: notAfter.Add(time.Hour), IsCA: true}
	ctx := peer.NewContext(context.Background(), &peer.Peer{
		Addr:     &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{leaf, ca}}}},
	})
	for _, tt := range []struct {
		now  time.Time
		want bool // authenticated
	}{
		{notAfter.Add(-time.Second), true},
		{notAfter, true}, // RFC 5280: valid through notAfter
		{notAfter.Add(time.Nanosecond), false},
		{notAfter.Add(time.Hour), false},
	} {
		p, err := NewAuthenticator(classifier, WithClock(func() time.Time { return tt.now })).Authenticate(ctx)
		if tt.want {
			if err != nil || p.ID != "cn:alice" || !p.Expires.Equal(notAfter.Add(time.Nanosecond)) {
				t.Errorf("at NotAfter%+v: Authenticate = %+v, %v; want cn:alice expiring just after NotAfter", tt.now.Sub(notAfter), p, err)
			}
			continue
		}
		var exp *ExpiredError
		if !errors.Is(err, ErrUnauthenticated) || !errors.Is(err, ErrExpired) || !errors.As(err, &exp) || status.Code(err) != codes.Unauthenticated {
			t.Fatalf("at NotAfter%+v: Authenticate = %+v, %v; want UNAUTHENTICATED wrapping ErrExpired", tt.now.Sub(notAfter), p, err)
		}
		if want := "credentials expired at 2026-11-26T10:00:00Z"; !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
		// crypto/x509 refuses the same chain at the same instant.
		if _, verr := leaf.Verify(x509.VerifyOptions{CurrentTime: tt.now}); verr == nil {
			t.Errorf("x509 accepted the chain at NotAfter%+v, Authenticate refused it", tt.now.Sub(notAfter))
		}
	}
}

// TestTokenExpiryThroughAuthenticate: the principal a token authenticates
// carries exp plus the leeway, so the proxy's stream timer and per-message
// check end it where Verify would refuse it.
func TestTokenExpiryThroughAuthenticate(t *testing.T) {
	keys := testjwt.NewKeys(t)
	v := newTestVerifier(t, keys.JWKS(t), nil) // leeway 30s
	classifier, err := NewClassifier([]Rule{{Match: "*@example.com", Kind: KindHuman}})
	if err != nil {
		t.Fatal(err)
	}
	tok := testjwt.Sign(t, jwa.EdDSA(), keys.Ed, "ed1", claims("alice@example.com"))
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{HandshakeComplete: true}}})
	ctx = metadata.NewIncomingContext(ctx, metadata.Pairs("authorization", "Bearer "+tok))
	p, err := NewAuthenticator(classifier, WithJWT(v)).Authenticate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := testNow.Add(10*time.Minute + 30*time.Second); !p.Expires.Equal(want) {
		t.Errorf("Expires = %v, want exp plus the 30s leeway %v", p.Expires, want)
	}
}
