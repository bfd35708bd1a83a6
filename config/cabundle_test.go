package config

import (
	"bytes"
	"strings"
	"testing"

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
