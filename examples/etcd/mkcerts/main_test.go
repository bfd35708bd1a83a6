package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestRun checks that the files mkcerts writes are what ztp.yaml and etcdctl need: a
// proxy certificate valid for 127.0.0.1 and client certificates carrying the example's
// SPIFFE IDs, all chaining to ca.pem; and that a second run does not replace the CA.
func TestRun(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "certs")
	var out strings.Builder
	if err := run(dir, false, &out); err != nil {
		t.Fatalf("run(%s) = %v", dir, err)
	}
	if got := strings.Count(out.String(), "\n"); got != 4 {
		t.Errorf("run printed %q, want the four certificate paths", out.String())
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}
	tests := []struct {
		name  string
		usage x509.ExtKeyUsage
		host  string // for the server certificate
		uri   string // for client certificates
	}{
		{name: "proxy", usage: x509.ExtKeyUsageServerAuth, host: "127.0.0.1"},
		{name: "deployer", usage: x509.ExtKeyUsageClientAuth, uri: "spiffe://example.org/ns/prod/sa/deployer"},
		{name: "alice", usage: x509.ExtKeyUsageClientAuth, uri: "spiffe://example.org/user/alice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pair, err := tls.LoadX509KeyPair(filepath.Join(dir, tc.name+".pem"), filepath.Join(dir, tc.name+"-key.pem"))
			if err != nil {
				t.Fatalf("LoadX509KeyPair(%s): %v", tc.name, err)
			}
			cert := pair.Leaf
			if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, DNSName: tc.host, KeyUsages: []x509.ExtKeyUsage{tc.usage}}); err != nil {
				t.Errorf("%s.pem does not verify against ca.pem for %v %q: %v", tc.name, tc.usage, tc.host, err)
			}
			if tc.uri != "" && (len(cert.URIs) != 1 || cert.URIs[0].String() != tc.uri) {
				t.Errorf("%s.pem URIs = %v, want [%s]", tc.name, cert.URIs, tc.uri)
			}
			st, err := os.Stat(filepath.Join(dir, tc.name+"-key.pem"))
			if err != nil {
				t.Fatal(err)
			}
			if st.Mode().Perm() != 0o600 {
				t.Errorf("%s-key.pem: mode %v, want 0600", tc.name, st.Mode().Perm())
			}
		})
	}

	if err := run(dir, false, &out); err == nil {
		t.Errorf("second run without -force = nil, want an error (it would replace the CA)")
	}
	after, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil || string(after) != string(caPEM) {
		t.Errorf("ca.pem changed by a refused run (err %v)", err)
	}
	if err := run(dir, true, &out); err != nil {
		t.Errorf("run with -force = %v, want nil", err)
	}
}
