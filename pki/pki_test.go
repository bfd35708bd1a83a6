package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"slices"
	"testing"
	"time"
)

// fixedClock returns a clock stuck at t, so validity windows are exact.
func fixedClock(t time.Time) func() time.Time { return func() time.Time { return t } }

var epoch = time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)

func newTestCA(t *testing.T, opts ...Option) *CA {
	t.Helper()
	ca, err := NewCA("ztp test CA", opts...)
	if err != nil {
		t.Fatalf("NewCA: %v", err)
	}
	return ca
}

func TestNewCA(t *testing.T) {
	ca := newTestCA(t, WithClock(fixedClock(epoch)))
	c := ca.Cert
	if !c.IsCA || !c.BasicConstraintsValid {
		t.Errorf("IsCA=%v BasicConstraintsValid=%v, want both true", c.IsCA, c.BasicConstraintsValid)
	}
	if c.MaxPathLen != 0 || !c.MaxPathLenZero {
		t.Errorf("MaxPathLen=%d MaxPathLenZero=%v, want 0 and true", c.MaxPathLen, c.MaxPathLenZero)
	}
	if c.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("KeyUsage=%v, want certSign set", c.KeyUsage)
	}
	if got, want := c.NotBefore, epoch.Add(-time.Minute); !got.Equal(want) {
		t.Errorf("NotBefore=%v, want %v", got, want)
	}
	if got, want := c.NotAfter, epoch.Add(10*365*24*time.Hour); !got.Equal(want) {
		t.Errorf("NotAfter=%v, want %v", got, want)
	}
	if got := c.Subject.CommonName; got != "ztp test CA" {
		t.Errorf("CommonName=%q, want %q", got, "ztp test CA")
	}
	pub, ok := c.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key %T, want ECDSA P-256", c.PublicKey)
	}
	if err := c.CheckSignatureFrom(c); err != nil {
		t.Errorf("CA is not self-signed: %v", err)
	}
	block, _ := pem.Decode(ca.CertPEM)
	if block == nil || block.Type != "CERTIFICATE" || !bytes.Equal(block.Bytes, c.Raw) {
		t.Errorf("CertPEM does not hold the CA certificate")
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatalf("KeyPEM: %v", err)
	}
	if kb, _ := pem.Decode(keyPEM); kb == nil || kb.Type != "PRIVATE KEY" {
		t.Errorf("KeyPEM block type %v, want PRIVATE KEY", kb)
	}
}

func TestNewCAInvalid(t *testing.T) {
	tests := []struct {
		name string
		cn   string
		opts []Option
	}{
		{"empty common name", "", nil},
		{"zero validity", "ca", []Option{WithValidity(0)}},
		{"negative validity", "ca", []Option{WithValidity(-time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := NewCA(tt.cn, tt.opts...)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("NewCA(%q) = %v, %v; want ErrInvalidOptions", tt.cn, ca, err)
			}
		})
	}
}

func TestIssueVerify(t *testing.T) {
	ca := newTestCA(t)
	tests := []struct {
		name       string
		opts       LeafOptions
		wantServer bool
		wantClient bool
	}{
		{
			name:       "server",
			opts:       LeafOptions{CommonName: "proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true},
			wantServer: true,
		},
		{
			name:       "spiffe client",
			opts:       LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true},
			wantClient: true,
		},
		{
			name:       "both",
			opts:       LeafOptions{CommonName: "alice", Server: true, Client: true},
			wantServer: true,
			wantClient: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Issue(tt.opts)
			if err != nil {
				t.Fatalf("Issue(%+v): %v", tt.opts, err)
			}
			c := leaf.Cert
			if c.IsCA {
				t.Errorf("leaf IsCA=true, want false")
			}
			if c.KeyUsage != x509.KeyUsageDigitalSignature {
				t.Errorf("KeyUsage=%v, want digitalSignature only", c.KeyUsage)
			}
			if c.SerialNumber.Sign() <= 0 || c.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v: want positive and at most 128 bits", c.SerialNumber)
			}
			for _, usage := range []struct {
				eku  x509.ExtKeyUsage
				want bool
			}{{x509.ExtKeyUsageServerAuth, tt.wantServer}, {x509.ExtKeyUsageClientAuth, tt.wantClient}} {
				_, err := c.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{usage.eku}})
				if got := err == nil; got != usage.want {
					t.Errorf("Verify(usage %v) error = %v; want success=%v", usage.eku, err, usage.want)
				}
			}
			var gotURIs []string
			for _, u := range c.URIs {
				gotURIs = append(gotURIs, u.String())
			}
			if !slices.Equal(gotURIs, tt.opts.URIs) {
				t.Errorf("URIs=%v, want %v", gotURIs, tt.opts.URIs)
			}
			if !slices.Equal(c.DNSNames, tt.opts.DNSNames) {
				t.Errorf("DNSNames=%v, want %v", c.DNSNames, tt.opts.DNSNames)
			}
			if len(c.IPAddresses) != len(tt.opts.IPs) {
				t.Errorf("IPAddresses=%v, want %v", c.IPAddresses, tt.opts.IPs)
			}
			if got := c.Subject.CommonName; got != tt.opts.CommonName {
				t.Errorf("CommonName=%q, want %q", got, tt.opts.CommonName)
			}
			// The tls.Certificate must be usable as is: its key matches.
			if leaf.TLS.Leaf != c || len(leaf.TLS.Certificate) != 1 || !bytes.Equal(leaf.TLS.Certificate[0], c.Raw) {
				t.Errorf("TLS certificate does not carry the leaf")
			}
			priv, ok := leaf.TLS.PrivateKey.(*ecdsa.PrivateKey)
			if !ok || !priv.PublicKey.Equal(c.PublicKey) || priv.Curve != elliptic.P256() {
				t.Errorf("TLS private key %T does not match the leaf's P-256 public key", leaf.TLS.PrivateKey)
			}
			kb, _ := pem.Decode(leaf.KeyPEM)
			if kb == nil || kb.Type != "PRIVATE KEY" {
				t.Fatalf("KeyPEM block %v, want PRIVATE KEY", kb)
			}
			if _, err := x509.ParsePKCS8PrivateKey(kb.Bytes); err != nil {
				t.Errorf("KeyPEM is not PKCS#8: %v", err)
			}
		})
	}
}

func TestIssueSerialsDiffer(t *testing.T) {
	ca := newTestCA(t)
	seen := map[string]bool{ca.Cert.SerialNumber.String(): true}
	for range 20 {
		leaf, err := ca.Issue(LeafOptions{CommonName: "x", Client: true})
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		s := leaf.Cert.SerialNumber.String()
		if seen[s] {
			t.Fatalf("serial %s issued twice", s)
		}
		seen[s] = true
	}
}

func TestIssueValidityWindow(t *testing.T) {
	ca := newTestCA(t, WithClock(fixedClock(epoch)))
	tests := []struct {
		name          string
		opts          LeafOptions
		wantNotBefore time.Time
		wantNotAfter  time.Time
		verifyAt      time.Time
		wantValid     bool
	}{
		{
			name:          "defaults from the CA clock",
			opts:          LeafOptions{CommonName: "a", Client: true},
			wantNotBefore: epoch.Add(-time.Minute),
			wantNotAfter:  epoch.Add(24 * time.Hour),
			verifyAt:      epoch,
			wantValid:     true,
		},
		{
			name:          "already expired",
			opts:          LeafOptions{CommonName: "a", Client: true, NotBefore: epoch.Add(-2 * time.Hour), NotAfter: epoch.Add(-time.Hour)},
			wantNotBefore: epoch.Add(-2 * time.Hour),
			wantNotAfter:  epoch.Add(-time.Hour),
			verifyAt:      epoch,
			wantValid:     false,
		},
		{
			name:          "not yet valid",
			opts:          LeafOptions{CommonName: "a", Client: true, NotBefore: epoch.Add(time.Hour)},
			wantNotBefore: epoch.Add(time.Hour),
			wantNotAfter:  epoch.Add(24 * time.Hour),
			verifyAt:      epoch,
			wantValid:     false,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Issue(tt.opts)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if !leaf.Cert.NotBefore.Equal(tt.wantNotBefore) || !leaf.Cert.NotAfter.Equal(tt.wantNotAfter) {
				t.Errorf("window %v..%v, want %v..%v", leaf.Cert.NotBefore, leaf.Cert.NotAfter, tt.wantNotBefore, tt.wantNotAfter)
			}
			_, err = leaf.Cert.Verify(x509.VerifyOptions{
				Roots: ca.Pool(), CurrentTime: tt.verifyAt, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
			})
			if got := err == nil; got != tt.wantValid {
				t.Errorf("Verify at %v: err=%v, want valid=%v", tt.verifyAt, err, tt.wantValid)
			}
		})
	}
}

func TestIssueInvalid(t *testing.T) {
	ca := newTestCA(t, WithClock(fixedClock(epoch)), WithValidity(48*time.Hour))
	tests := []struct {
		name string
		opts LeafOptions
	}{
		{"no name", LeafOptions{Client: true}},
		{"no usage", LeafOptions{CommonName: "a"}},
		{"relative URI", LeafOptions{URIs: []string{"ns/prod"}, Client: true}},
		{"unparsable URI", LeafOptions{URIs: []string{"spiffe://bad host/x"}, Client: true}},
		{"empty DNS name", LeafOptions{DNSNames: []string{""}, Server: true}},
		{"invalid IP", LeafOptions{IPs: []net.IP{{1, 2, 3}}, Server: true}},
		{"inverted window", LeafOptions{CommonName: "a", Client: true, NotBefore: epoch, NotAfter: epoch.Add(-time.Second)}},
		{"empty window", LeafOptions{CommonName: "a", Client: true, NotBefore: epoch, NotAfter: epoch}},
		{"outlives CA", LeafOptions{CommonName: "a", Client: true, NotAfter: epoch.Add(49 * time.Hour)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			leaf, err := ca.Issue(tt.opts)
			if !errors.Is(err, ErrInvalidOptions) {
				t.Fatalf("Issue(%+v) = %v, %v; want ErrInvalidOptions", tt.opts, leaf, err)
			}
		})
	}
	t.Run("CA without key", func(t *testing.T) {
		broken := &CA{Cert: ca.Cert}
		if _, err := broken.Issue(LeafOptions{CommonName: "a", Client: true}); !errors.Is(err, ErrInvalidOptions) {
			t.Fatalf("Issue on CA without key: err=%v, want ErrInvalidOptions", err)
		}
	})
}

// TestPathLenZero proves the CA cannot be stretched through an
// intermediate, even one signed with the real CA key.
func TestPathLenZero(t *testing.T) {
	ca := newTestCA(t)
	ikey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	itmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "intermediate"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	ider, err := x509.CreateCertificate(rand.Reader, itmpl, ca.Cert, ikey.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	inter, _ := x509.ParseCertificate(ider)
	lkey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ltmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: "leaf"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	lder, err := x509.CreateCertificate(rand.Reader, ltmpl, inter, lkey.Public(), ikey)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(lder)
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	_, err = leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: inters, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}})
	if err == nil {
		t.Fatalf("chain through an intermediate verified; want failure because of MaxPathLen 0")
	}
}

func TestPoolIsFresh(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	p := ca.Pool()
	p.AddCert(other.Cert)
	leaf, err := other.Issue(LeafOptions{CommonName: "x", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	_, err = leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err == nil {
		t.Fatalf("a foreign leaf verified against ca.Pool() after a previous pool was extended; pools must not be shared")
	}
}
