package identity

import (
	"crypto/x509"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func TestParseSPIFFE(t *testing.T) {
	long := "spiffe://example.org/" + strings.Repeat("a", maxSPIFFEIDLen-len("spiffe://example.org/"))
	tests := []struct {
		name    string
		in      string
		wantTD  string
		wantErr bool
	}{
		{name: "workload", in: "spiffe://example.org/ns/prod/sa/deployer", wantTD: "example.org"},
		{name: "trust domain only", in: "spiffe://example.org", wantTD: "example.org"},
		{name: "all allowed characters", in: "spiffe://a-b_c.9/A-Z_a.z-0.9", wantTD: "a-b_c.9"},
		{name: "dots inside a segment", in: "spiffe://td/..a/a..", wantTD: "td"},
		{name: "exactly 2048 bytes", in: long, wantTD: "example.org"},
		{name: "2049 bytes", in: long + "a", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "wrong scheme", in: "https://example.org/x", wantErr: true},
		{name: "uppercase scheme", in: "SPIFFE://example.org/x", wantErr: true},
		{name: "no authority", in: "spiffe:example.org/x", wantErr: true},
		{name: "empty trust domain", in: "spiffe:///x", wantErr: true},
		{name: "uppercase trust domain", in: "spiffe://Example.org/x", wantErr: true},
		{name: "trust domain too long", in: "spiffe://" + strings.Repeat("a", 256), wantErr: true},
		{name: "port", in: "spiffe://example.org:8443/x", wantErr: true},
		{name: "userinfo", in: "spiffe://user@example.org/x", wantErr: true},
		{name: "query", in: "spiffe://example.org/x?a=b", wantErr: true},
		{name: "empty query", in: "spiffe://example.org/x?", wantErr: true},
		{name: "fragment", in: "spiffe://example.org/x#frag", wantErr: true},
		{name: "percent encoding", in: "spiffe://example.org/%41", wantErr: true},
		{name: "trailing slash", in: "spiffe://example.org/x/", wantErr: true},
		{name: "root path", in: "spiffe://example.org/", wantErr: true},
		{name: "double slash", in: "spiffe://example.org//x", wantErr: true},
		{name: "dot segment", in: "spiffe://example.org/a/./b", wantErr: true},
		{name: "dot dot segment", in: "spiffe://example.org/a/../b", wantErr: true},
		{name: "space in path", in: "spiffe://example.org/a b", wantErr: true},
		{name: "non-ASCII path", in: "spiffe://example.org/é", wantErr: true},
		{name: "IPv6 trust domain", in: "spiffe://[::1]/x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, err := parseSPIFFE(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrInvalidSPIFFEID) {
					t.Fatalf("parseSPIFFE(%q) = %v, %v; want ErrInvalidSPIFFEID", clip(tt.in), id, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseSPIFFE(%q) error: %v", clip(tt.in), err)
			}
			if id.trustDomain != tt.wantTD || id.String() != tt.in {
				t.Errorf("parseSPIFFE(%q) = {td %q, %q}, want td %q and the input back", clip(tt.in), id.trustDomain, clip(id.String()), tt.wantTD)
			}
		})
	}
}

// FuzzParseSPIFFE checks that the parser never panics and that anything it
// accepts round-trips, agrees with net/url about its parts, and is what
// FromCertificate returns for a certificate carrying it.
func FuzzParseSPIFFE(f *testing.F) {
	for _, s := range []string{
		"spiffe://example.org/ns/prod/sa/deployer", "spiffe://example.org", "spiffe://td/..a",
		"spiffe://example.org:1/x", "spiffe://u@td/x", "spiffe://td/x?q#f", "spiffe://td//x",
		"spiffe://td/./x", "spiffe://td/%2e", "spiffe:///", "SPIFFE://td/x", "",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := parseSPIFFE(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidSPIFFEID) {
				t.Fatalf("parseSPIFFE(%q) error %v does not wrap ErrInvalidSPIFFEID", s, err)
			}
			return
		}
		if id.String() != s {
			t.Fatalf("parseSPIFFE(%q).String() = %q, want the input", s, id.String())
		}
		again, err := parseSPIFFE(id.String())
		if err != nil || again != id {
			t.Fatalf("re-parse of %q = %v, %v; want %v", id.String(), again, err, id)
		}
		u, err := url.Parse(s)
		if err != nil {
			t.Fatalf("accepted %q but url.Parse fails: %v", s, err)
		}
		if u.Scheme != "spiffe" || u.Host != id.trustDomain || u.Path != id.path || u.User != nil ||
			u.Port() != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.Opaque != "" {
			t.Fatalf("accepted %q but net/url sees %#v", s, u)
		}
		got, err := FromCertificate(&x509.Certificate{URIs: []*url.URL{u}})
		if id.path == "" {
			// Valid SPIFFE ID, but a leaf SVID's id must have a path.
			if !errors.Is(err, ErrInvalidSPIFFEID) {
				t.Fatalf("FromCertificate(URI %q) = %q, %v; want ErrInvalidSPIFFEID", s, got, err)
			}
			return
		}
		if err != nil || got != s {
			t.Fatalf("FromCertificate(URI %q) = %q, %v; want the id back", s, got, err)
		}
	})
}
