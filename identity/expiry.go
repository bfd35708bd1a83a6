package identity

import (
	"crypto/x509"
	"time"
)

// The expiry rule, the one place that says when a credential stops counting.
//
// Principal.Expires is the first instant at which the credential that proved
// the id no longer counts; the credential counts at every instant before it.
// It is derived from the credential so that this single comparison gives the
// same answer as the check made when the credential was presented:
//
//   - a bearer token: its exp plus the configured leeway. RFC 7519 makes exp
//     exclusive (the token is valid only before it), and the leeway is the
//     clock skew the proxy grants the issuer;
//   - a client certificate: the earliest NotAfter of the verified chain plus
//     one nanosecond. RFC 5280 validity includes notAfter itself, and so does
//     crypto/x509 (a chain is expired only when now is after NotAfter), so the
//     first instant it no longer counts is just after.
//
// Authenticate refuses a principal whose Expires is reached, and a proxy ends
// calls of that principal at Expires, using the same function (Expired), so a
// credential counts exactly as long at connection, per message and for a
// stream's timer.

// Expired reports whether a credential that stops counting at expires no
// longer counts at now. A zero expires never expires (an authenticator that
// does not know the credential's lifetime).
func Expired(expires, now time.Time) bool {
	return !expires.IsZero() && !now.Before(expires)
}

// ExpiredAt reports whether p's credential no longer counts at now (Expired).
func (p Principal) ExpiredAt(now time.Time) bool { return Expired(p.Expires, now) }

// ExpiredError says that a credential was refused, or a call ended, because
// its expiry passed. It matches ErrExpired with errors.Is.
type ExpiredError struct {
	At time.Time // the credential's Expires
}

func (e *ExpiredError) Error() string {
	return "credentials expired at " + e.At.UTC().Format(time.RFC3339)
}

func (e *ExpiredError) Is(target error) bool { return target == ErrExpired }

// checkExpiry returns an *ExpiredError when p's credential no longer counts
// at now.
func checkExpiry(p Principal, now time.Time) error {
	if p.ExpiredAt(now) {
		return &ExpiredError{At: p.Expires}
	}
	return nil
}

// tokenExpires is Principal.Expires of a bearer token with claim exp checked
// with leeway.
func tokenExpires(exp time.Time, leeway time.Duration) time.Time {
	return exp.Add(leeway)
}

// chainExpires is Principal.Expires of a client certificate chain: just after
// its earliest NotAfter (zero for an empty chain).
func chainExpires(chain []*x509.Certificate) time.Time {
	var last time.Time
	for _, c := range chain {
		if last.IsZero() || c.NotAfter.Before(last) {
			last = c.NotAfter
		}
	}
	if last.IsZero() {
		return time.Time{}
	}
	return last.Add(time.Nanosecond)
}
