package identity

import (
	"fmt"
	"strings"
)

const (
	spiffePrefix = "spiffe://"
	// maxSPIFFEIDLen and maxTrustDomainLen come from SPIFFE-ID §2.3. Ids
	// are keys in rate limiters and audit records, so an unbounded one is
	// refused rather than carried along.
	maxSPIFFEIDLen    = 2048
	maxTrustDomainLen = 255
)

// spiffeID is a validated SPIFFE ID. Its String form is exactly the text it
// was parsed from: the grammar accepted leaves no room for two spellings.
type spiffeID struct {
	trustDomain string
	path        string // "" or "/seg/seg..."
}

func (id spiffeID) String() string { return spiffePrefix + id.trustDomain + id.path }

// parseSPIFFE validates s as a SPIFFE ID. It is deliberately stricter than
// a URI parser: only the characters the SPIFFE spec allows are accepted, so
// percent-encoding, userinfo, ports, queries and fragments are all refused
// by the character check without needing special cases.
func parseSPIFFE(s string) (spiffeID, error) {
	if len(s) > maxSPIFFEIDLen {
		return spiffeID{}, invalidSPIFFE(s, fmt.Sprintf("longer than %d bytes", maxSPIFFEIDLen))
	}
	rest, ok := strings.CutPrefix(s, spiffePrefix)
	if !ok {
		return spiffeID{}, invalidSPIFFE(s, `scheme must be "spiffe://"`)
	}
	td, p := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		td, p = rest[:i], rest[i:]
	}
	if td == "" {
		return spiffeID{}, invalidSPIFFE(s, "trust domain is empty")
	}
	if len(td) > maxTrustDomainLen {
		return spiffeID{}, invalidSPIFFE(s, fmt.Sprintf("trust domain longer than %d bytes", maxTrustDomainLen))
	}
	for i := 0; i < len(td); i++ {
		if !isTrustDomainChar(td[i]) {
			return spiffeID{}, invalidSPIFFE(s, fmt.Sprintf("trust domain has invalid character %q", td[i]))
		}
	}
	if p != "" {
		for seg := range strings.SplitSeq(p[1:], "/") {
			switch seg {
			case "":
				return spiffeID{}, invalidSPIFFE(s, "path has an empty segment")
			case ".", "..":
				return spiffeID{}, invalidSPIFFE(s, fmt.Sprintf("path has a %q segment", seg))
			}
			for i := 0; i < len(seg); i++ {
				if !isPathChar(seg[i]) {
					return spiffeID{}, invalidSPIFFE(s, fmt.Sprintf("path has invalid character %q", seg[i]))
				}
			}
		}
	}
	return spiffeID{trustDomain: td, path: p}, nil
}

func isTrustDomainChar(c byte) bool {
	return 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

func isPathChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_'
}

func invalidSPIFFE(s, reason string) error {
	return fmt.Errorf("%w %q: %s", ErrInvalidSPIFFEID, clip(s), reason)
}

// clip bounds attacker-chosen text quoted in error messages, which end up
// in status messages and logs.
func clip(s string) string {
	const max = 128
	if len(s) <= max {
		return s
	}
	return s[:max] + "..."
}
