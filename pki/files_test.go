package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func fileMode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return fi.Mode().Perm()
}

func TestCAWriteFilesLoadCARoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs") // WriteFiles creates it
	ca := newTestCA(t)
	if err := ca.WriteFiles(dir, "ca"); err != nil {
		t.Fatalf("CA.WriteFiles: %v", err)
	}
	certFile, keyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	if got := fileMode(t, certFile); got != 0o644 {
		t.Errorf("mode of %s = %v, want 0644", certFile, got)
	}
	if got := fileMode(t, keyFile); got != 0o600 {
		t.Errorf("mode of %s = %v, want 0600", keyFile, got)
	}
	loaded, err := LoadCA(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadCA: %v", err)
	}
	if !loaded.Cert.Equal(ca.Cert) {
		t.Errorf("loaded certificate differs from the written one")
	}
	if !bytes.Equal(loaded.CertPEM, ca.CertPEM) {
		t.Errorf("loaded CertPEM differs:\n got %s\nwant %s", loaded.CertPEM, ca.CertPEM)
	}
	if !loaded.Key.Public().(*ecdsa.PublicKey).Equal(ca.Key.Public()) {
		t.Errorf("loaded key differs from the written one")
	}
	// A leaf from the loaded CA verifies against the original's pool.
	leaf, err := loaded.Issue(LeafOptions{URIs: []string{"spiffe://example.org/user/alice"}, Client: true})
	if err != nil {
		t.Fatalf("Issue from loaded CA: %v", err)
	}
	if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("leaf from loaded CA does not verify against the original: %v", err)
	}
}

func TestWriteFilesLeaf(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	leaf, err := ca.Issue(LeafOptions{CommonName: "proxy", DNSNames: []string{"localhost"}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, "proxy", leaf); err != nil {
		t.Fatalf("WriteFiles: %v", err)
	}
	certFile, keyFile := filepath.Join(dir, "proxy.pem"), filepath.Join(dir, "proxy-key.pem")
	if got := fileMode(t, certFile); got != 0o644 {
		t.Errorf("mode of %s = %v, want 0644", certFile, got)
	}
	if got := fileMode(t, keyFile); got != 0o600 {
		t.Errorf("mode of %s = %v, want 0600", keyFile, got)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("tls.LoadX509KeyPair on written files: %v", err)
	}
	if !bytes.Equal(pair.Certificate[0], leaf.Cert.Raw) {
		t.Errorf("written certificate differs from the leaf")
	}

	// Overwriting replaces both files and leaves no temporary files behind.
	second, err := ca.Issue(LeafOptions{CommonName: "proxy2", Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, "proxy", second); err != nil {
		t.Fatalf("WriteFiles (overwrite): %v", err)
	}
	got, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, second.CertPEM) {
		t.Errorf("after overwrite %s holds the old certificate", certFile)
	}
	if got := fileMode(t, keyFile); got != 0o600 {
		t.Errorf("mode of %s after overwrite = %v, want 0600", keyFile, got)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want exactly proxy.pem and proxy-key.pem", names)
	}
}

func TestWriteFilesInvalid(t *testing.T) {
	ca := newTestCA(t)
	leaf, err := ca.Issue(LeafOptions{CommonName: "x", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		fileName string
		leaf     *Leaf
		want     error
	}{
		{"empty name", "", leaf, ErrInvalidName},
		{"dot", ".", leaf, ErrInvalidName},
		{"dot dot", "..", leaf, ErrInvalidName},
		{"slash", "../escape", leaf, ErrInvalidName},
		{"backslash", `a\b`, leaf, ErrInvalidName},
		{"nil leaf", "x", nil, ErrInvalidOptions},
		{"empty leaf", "x", &Leaf{}, ErrInvalidOptions},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			err := WriteFiles(dir, tt.fileName, tt.leaf)
			if !errors.Is(err, tt.want) {
				t.Fatalf("WriteFiles(%q) = %v, want %v", tt.fileName, err, tt.want)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Errorf("WriteFiles failed but left %d files behind", len(entries))
			}
		})
	}
}

func writeFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// selfSigned builds a CA the way other tools might (openssl-style key
// encodings, no key usage extension) to check that LoadCA accepts it.
func selfSigned(t *testing.T, key crypto.Signer, tmpl *x509.Certificate) []byte {
	t.Helper()
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func TestLoadCAForeignEncodings(t *testing.T) {
	now := time.Now()
	caTmpl := func() *x509.Certificate {
		return &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "openssl-ish"},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, // no KeyUsage, like openssl's v3_ca
		}
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		certPEM []byte
		keyPEM  []byte
	}{
		{
			name:    "SEC 1 EC key after EC PARAMETERS",
			certPEM: selfSigned(t, ecKey, caTmpl()),
			keyPEM: append(pem.EncodeToMemory(&pem.Block{Type: "EC PARAMETERS", Bytes: []byte{6, 8, 42, 134, 72, 206, 61, 3, 1, 7}}),
				pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER})...),
		},
		{
			name:    "PKCS#1 RSA key",
			certPEM: selfSigned(t, rsaKey, caTmpl()),
			keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			ca, err := LoadCA(writeFile(t, dir, "ca.pem", tt.certPEM), writeFile(t, dir, "ca-key.pem", tt.keyPEM))
			if err != nil {
				t.Fatalf("LoadCA: %v", err)
			}
			leaf, err := ca.Issue(LeafOptions{CommonName: "svc", Client: true})
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if _, err := leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("leaf does not verify: %v", err)
			}
		})
	}
}

func TestLoadCAErrors(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t)
	other := newTestCA(t)
	if err := ca.WriteFiles(dir, "ca"); err != nil {
		t.Fatal(err)
	}
	if err := other.WriteFiles(dir, "other"); err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue(LeafOptions{CommonName: "leaf", Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := WriteFiles(dir, "leaf", leaf); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	signOnlyKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signOnly := selfSigned(t, signOnlyKey, &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "no certSign"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageDigitalSignature,
	})
	signOnlyKeyPEM, err := encodeKey(signOnlyKey)
	if err != nil {
		t.Fatal(err)
	}
	p := func(name string) string { return filepath.Join(dir, name) }
	tests := []struct {
		name     string
		certFile string
		keyFile  string
		want     error
	}{
		{"missing cert file", p("nope.pem"), p("ca-key.pem"), fs.ErrNotExist},
		{"missing key file", p("ca.pem"), p("nope.pem"), fs.ErrNotExist},
		{"garbage cert", writeFile(t, dir, "garbage.pem", []byte("not pem")), p("ca-key.pem"), ErrInvalidPEM},
		{"key given as cert", p("ca-key.pem"), p("ca-key.pem"), ErrInvalidPEM},
		{"cert given as key", p("ca.pem"), p("ca.pem"), ErrInvalidPEM},
		{"corrupt certificate DER", writeFile(t, dir, "corrupt.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{0x30, 0x03, 1, 2, 3}})), p("ca-key.pem"), ErrInvalidPEM},
		{"corrupt key DER", p("ca.pem"), writeFile(t, dir, "corrupt-key.pem", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})), ErrInvalidPEM},
		{"leaf is not a CA", p("leaf.pem"), p("leaf-key.pem"), ErrNotCA},
		{"CA without certSign", writeFile(t, dir, "signonly.pem", signOnly), writeFile(t, dir, "signonly-key.pem", signOnlyKeyPEM), ErrNotCA},
		{"key of another CA", p("ca.pem"), p("other-key.pem"), ErrKeyMismatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadCA(tt.certFile, tt.keyFile)
			if !errors.Is(err, tt.want) {
				t.Fatalf("LoadCA(%s, %s) = %v, %v; want error %v", filepath.Base(tt.certFile), filepath.Base(tt.keyFile), got, err, tt.want)
			}
		})
	}
}
