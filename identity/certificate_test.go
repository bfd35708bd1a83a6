package identity

import (
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"net/url"
	"strings"
	"testing"
)

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatalf("url.Parse(%q): %v", s, err)
	}
	return u
}

func TestFromCertificate(t *testing.T) {
	cert := func(cn string, uris ...*url.URL) *x509.Certificate {
		return &x509.Certificate{Subject: pkix.Name{CommonName: cn}, URIs: uris}
	}
	tests := []struct {
		name    string
		cert    *x509.Certificate
		want    string
		wantErr error
	}{
		{name: "spiffe URI", cert: cert("", mustURL(t, "spiffe://example.org/ns/prod/sa/deployer")), want: "spiffe://example.org/ns/prod/sa/deployer"},
		{name: "spiffe wins over CN", cert: cert("alice", mustURL(t, "spiffe://example.org/user/alice")), want: "spiffe://example.org/user/alice"},
		{name: "CN fallback", cert: cert("alice"), want: "cn:alice"},
		{name: "CN with spaces and unicode", cert: cert("Zoë Smith"), want: "cn:Zoë Smith"},
		{name: "CN that looks like a SPIFFE ID stays a CN", cert: cert("spiffe://example.org/admin"), want: "cn:spiffe://example.org/admin"},
		{name: "non-spiffe URI ignored", cert: cert("bob", mustURL(t, "https://example.org/bob")), want: "cn:bob"},
		{name: "non-spiffe URI beside spiffe", cert: cert("alice", mustURL(t, "https://example.org/x"), mustURL(t, "spiffe://example.org/svc")), wantErr: ErrAmbiguousSPIFFEID},
		{name: "url.Parse lowercases the scheme", cert: cert("", mustURL(t, "SPIFFE://example.org/svc")), want: "spiffe://example.org/svc"},
		{name: "two spiffe URIs", cert: cert("alice", mustURL(t, "spiffe://example.org/a"), mustURL(t, "spiffe://example.org/b")), wantErr: ErrAmbiguousSPIFFEID},
		{name: "two identical spiffe URIs", cert: cert("", mustURL(t, "spiffe://example.org/a"), mustURL(t, "spiffe://example.org/a")), wantErr: ErrAmbiguousSPIFFEID},
		{name: "invalid spiffe does not fall back to CN", cert: cert("alice", mustURL(t, "spiffe://Example.org/a")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with query", cert: cert("", mustURL(t, "spiffe://example.org/a?admin=1")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with fragment", cert: cert("", mustURL(t, "spiffe://example.org/a#b")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with userinfo", cert: cert("", mustURL(t, "spiffe://root@example.org/a")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with port", cert: cert("", mustURL(t, "spiffe://example.org:443/a")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with dot dot", cert: cert("", mustURL(t, "spiffe://example.org/ns/../admin")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with escaped slash", cert: cert("", mustURL(t, "spiffe://example.org/a%2Fb")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe opaque", cert: cert("", mustURL(t, "spiffe:example.org/a")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe empty trust domain", cert: cert("", mustURL(t, "spiffe:///a")), wantErr: ErrInvalidSPIFFEID},
		{name: "hand-built uppercase scheme", cert: cert("alice", &url.URL{Scheme: "SPIFFE", Host: "example.org", Path: "/a"}), wantErr: ErrInvalidSPIFFEID},
		{name: "hand-built path with space", cert: cert("", &url.URL{Scheme: "spiffe", Host: "example.org", Path: "/a b"}), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe without path", cert: cert("alice", mustURL(t, "spiffe://example.org")), wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with certSign key usage", cert: &x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, URIs: []*url.URL{mustURL(t, "spiffe://example.org/a")}}, wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with cRLSign key usage", cert: &x509.Certificate{KeyUsage: x509.KeyUsageCRLSign, URIs: []*url.URL{mustURL(t, "spiffe://example.org/a")}}, wantErr: ErrInvalidSPIFFEID},
		{name: "spiffe with leaf key usage", cert: &x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, URIs: []*url.URL{mustURL(t, "spiffe://example.org/a")}}, want: "spiffe://example.org/a"},
		{name: "spiffe on a CA certificate", cert: &x509.Certificate{IsCA: true, URIs: []*url.URL{mustURL(t, "spiffe://example.org/a")}}, wantErr: ErrInvalidSPIFFEID},
		{name: "nothing", cert: cert(""), wantErr: ErrNoIdentity},
		{name: "only non-spiffe URI", cert: cert("", mustURL(t, "https://example.org/x")), wantErr: ErrNoIdentity},
		{name: "CN with NUL", cert: cert("alice\x00admin"), wantErr: ErrNoIdentity},
		{name: "CN with newline", cert: cert("alice\nadmin"), wantErr: ErrNoIdentity},
		{name: "CN with bidi override", cert: cert("alice\u202eadmin"), wantErr: ErrNoIdentity},
		{name: "CN with invalid UTF-8", cert: cert("alice\xff"), wantErr: ErrNoIdentity},
		{name: "CN too long", cert: cert(strings.Repeat("a", maxCommonNameLen+1)), wantErr: ErrNoIdentity},
		{name: "nil certificate", cert: nil, wantErr: ErrNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromCertificate(tt.cert)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != "" {
					t.Fatalf("FromCertificate() = %q, %v; want \"\", %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FromCertificate() = %q, %v; want %q, nil", got, err, tt.want)
			}
		})
	}
}

func TestFromTLS(t *testing.T) {
	verified := &x509.Certificate{URIs: []*url.URL{mustURL(t, "spiffe://example.org/verified")}}
	unverified := &x509.Certificate{URIs: []*url.URL{mustURL(t, "spiffe://example.org/admin")}, Subject: pkix.Name{CommonName: "admin"}}
	tests := []struct {
		name    string
		cs      tls.ConnectionState
		want    string
		wantErr error
	}{
		{
			name: "verified chain",
			cs:   tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{verified}, VerifiedChains: [][]*x509.Certificate{{verified}}},
			want: "spiffe://example.org/verified",
		},
		{
			name: "uses the verified leaf, not PeerCertificates",
			cs:   tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{unverified}, VerifiedChains: [][]*x509.Certificate{{verified}}},
			want: "spiffe://example.org/verified",
		},
		{
			name:    "peer certificate without verified chain",
			cs:      tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{unverified}},
			wantErr: ErrNoCertificate,
		},
		{
			name:    "empty verified chain",
			cs:      tls.ConnectionState{HandshakeComplete: true, PeerCertificates: []*x509.Certificate{unverified}, VerifiedChains: [][]*x509.Certificate{{}}},
			wantErr: ErrNoCertificate,
		},
		{
			name:    "handshake not complete",
			cs:      tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{verified}}},
			wantErr: ErrNoCertificate,
		},
		{
			name:    "nil verified leaf",
			cs:      tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{nil}}},
			wantErr: ErrNoCertificate,
		},
		{name: "zero state", wantErr: ErrNoCertificate},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := FromTLS(tt.cs)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || got != "" {
					t.Fatalf("FromTLS() = %q, %v; want \"\", %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("FromTLS() = %q, %v; want %q, nil", got, err, tt.want)
			}
		})
	}
}
