package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ztp-dev/ztp/pki"
)

// TestCABundle: a CA file must hold a CA certificate; a leaf alone, a
// malformed certificate or no certificate at all is refused, naming why.
func TestCABundle(t *testing.T) {
	ca, err := pki.NewCA("bundle test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: "server", DNSNames: []string{"localhost"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := ca.KeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		pem  []byte
		want string // "" when accepted
	}{
		{"CA", ca.CertPEM, ""},
		{"leaf then CA", bytes.Join([][]byte{leaf.CertPEM, ca.CertPEM}, nil), ""},
		{"CA key before the CA", bytes.Join([][]byte{keyPEM, ca.CertPEM}, nil), ""},
		{"leaf", leaf.CertPEM, "holds no CA certificate: 1 certificate(s)"},
		{"self-signed leaf, pinned", selfSignedLeaf(t), ""},
		{"key only", keyPEM, "holds no PEM certificate"},
		{"empty", nil, "holds no PEM certificate"},
		{"malformed", []byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"), "holds a malformed certificate (number 1)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkCABundle(tc.pem)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("checkCABundle = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkCABundle = %v, want %q", err, tc.want)
			}
		})
	}
}

// selfSignedLeaf is a server certificate that signs itself (CA:FALSE), as
// etcd --auto-tls makes one.
func selfSignedLeaf(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "etcd"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: false, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func FuzzCABundle(f *testing.F) {
	ca, err := pki.NewCA("fuzz CA")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(ca.CertPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := checkCABundle(data); err == nil && !bytes.Contains(data, []byte("CERTIFICATE")) {
			t.Errorf("accepted a bundle without a CERTIFICATE block: %q", data)
		}
	})
}
