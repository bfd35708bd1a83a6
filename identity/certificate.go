package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// commonNamePrefix marks ids taken from a subject common name; it cannot
// start a SPIFFE ID, so the two namespaces never collide.
const commonNamePrefix = "cn:"

// maxCommonNameLen is generous (RFC 5280's upper bound is 64) but keeps ids
// bounded like SPIFFE IDs are.
const maxCommonNameLen = 1024

// FromCertificate derives the principal id from a VERIFIED client leaf
// certificate: its SPIFFE ID if it has a spiffe URI SAN, else "cn:" + its
// subject common name (other URI SANs are then ignored). The caller must
// have verified the certificate; FromTLS does that selection for a TLS
// connection.
//
// A certificate with a spiffe URI is held to the X509-SVID leaf rules
// (§2, §5.2): exactly one URI SAN, a valid SPIFFE ID with a path, not a CA,
// no certSign or cRLSign key usage. Failing any of them is an error; it
// never falls back to the common name.
func FromCertificate(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", ErrNoCertificate
	}
	var spiffeURI *url.URL
	for _, u := range cert.URIs {
		// crypto/x509 parses SANs with url.Parse, which lowercases the
		// scheme. EqualFold makes a hand-built "SPIFFE" URL count as a
		// SPIFFE ID (and then fail the strict parse) instead of being
		// skipped in favour of the common name.
		if u != nil && strings.EqualFold(u.Scheme, "spiffe") {
			spiffeURI = u
			break
		}
	}
	if spiffeURI == nil {
		cn := cert.Subject.CommonName
		if err := checkCommonName(cn); err != nil {
			return "", err
		}
		return commonNamePrefix + cn, nil
	}
	if len(cert.URIs) != 1 {
		return "", fmt.Errorf("%w (%d URI SANs)", ErrAmbiguousSPIFFEID, len(cert.URIs))
	}
	// u.String() re-renders whatever the URL holds (userinfo, port, query,
	// escaped path), and the strict parser then refuses any of it.
	id, err := parseSPIFFE(spiffeURI.String())
	if err != nil {
		return "", err
	}
	switch {
	case id.path == "":
		return "", fmt.Errorf("%w %q: a leaf SVID's id must have a path", ErrInvalidSPIFFEID, id)
	case cert.IsCA:
		return "", fmt.Errorf("%w %q: certificate is a CA, not a leaf", ErrInvalidSPIFFEID, id)
	case cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != 0:
		return "", fmt.Errorf("%w %q: a leaf SVID must not have certSign or cRLSign key usage", ErrInvalidSPIFFEID, id)
	}
	return id.String(), nil
}

func checkCommonName(cn string) error {
	switch {
	case cn == "":
		return fmt.Errorf("%w: no SPIFFE ID and no common name", ErrNoIdentity)
	case len(cn) > maxCommonNameLen:
		return fmt.Errorf("%w: common name longer than %d bytes", ErrNoIdentity, maxCommonNameLen)
	case !utf8.ValidString(cn):
		return fmt.Errorf("%w: common name is not valid UTF-8", ErrNoIdentity)
	}
	for _, r := range cn {
		// Control, format (bidi overrides, zero-width) and non-ASCII space
		// characters would let two ids look alike in an audit log.
		if !unicode.IsPrint(r) {
			return fmt.Errorf("%w: common name %q has unprintable character %U", ErrNoIdentity, clip(cn), r)
		}
	}
	return nil
}

// FromTLS derives the principal id from a TLS connection's verified client
// certificate, VerifiedChains[0][0]. PeerCertificates is never used: it is
// filled even when verification was skipped, so a connection without a
// verified chain is ErrNoCertificate.
func FromTLS(cs tls.ConnectionState) (string, error) {
	if !cs.HandshakeComplete || len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return "", ErrNoCertificate
	}
	return FromCertificate(cs.VerifiedChains[0][0])
}
