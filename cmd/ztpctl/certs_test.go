package main

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/identity"
)

func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&bytes.Buffer{})
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestCertsInitIssue(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCLI(t, "certs", "init", "--dir", dir); err != nil {
		t.Fatalf("certs init: %v", err)
	}
	out, err := runCLI(t, "certs", "issue", "alice", "--dir", dir, "--ca-dir", dir, "--spiffe", "spiffe://example.org/user/alice", "--client")
	if err != nil {
		t.Fatalf("certs issue: %v", err)
	}
	if !strings.Contains(out, filepath.Join(dir, "alice.pem")) {
		t.Errorf("certs issue output = %q, want it to name alice.pem", out)
	}
	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	leaf := readCert(t, filepath.Join(dir, "alice.pem"))
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		t.Fatalf("alice.pem does not verify as a client cert against ca.pem: %v", err)
	}
	if id, err := identity.FromCertificate(chains[0][0]); err != nil || id != "spiffe://example.org/user/alice" {
		t.Errorf("principal of alice.pem = %q, %v; want spiffe://example.org/user/alice", id, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, "alice-key.pem")); st.Mode().Perm() != 0o600 {
		t.Errorf("alice-key.pem mode = %v, want 0600", st.Mode().Perm())
	}
}

func TestCertsRefuseOverwrite(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCLI(t, "certs", "init", "--dir", dir); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	_, err := runCLI(t, "certs", "init", "--dir", dir)
	if err == nil || !strings.Contains(err.Error(), "not overwriting") {
		t.Fatalf("second certs init = %v, want a refusal to overwrite", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, "ca-key.pem"))
	if !bytes.Equal(before, after) {
		t.Error("the CA key changed despite the refusal")
	}
	if _, err := runCLI(t, "certs", "quickstart", "--dir", dir); err == nil {
		t.Error("quickstart over an existing CA succeeded, want a refusal")
	}
	if _, err := os.Stat(filepath.Join(dir, "proxy.pem")); err == nil {
		t.Error("refused quickstart still wrote proxy.pem")
	}
}

func TestCertsIssueErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no usage", []string{"certs", "issue", "x", "--ca-dir", dir, "--dir", dir}, "--client, --server or both"},
		{"no CA", []string{"certs", "issue", "x", "--ca-dir", dir, "--dir", dir, "--client", "--spiffe", "spiffe://a/b"}, "ztpctl certs init"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := runCLI(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ztpctl %v = %v, want error containing %q", tc.args, err, tc.want)
			}
		})
	}
}

// TestQuickstartAgainstProxy: the quickstart certificates work with a real proxy.
func TestCertsQuickstartFiles(t *testing.T) {
	dir := t.TempDir()
	out, err := runCLI(t, "certs", "quickstart", "--dir", dir, "--trust-domain", "demo.example", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"ca.pem", "proxy.pem", "deployer.pem", "alice.pem", "bob-key.pem"} {
		if !strings.Contains(out, filepath.Join(dir, f)) {
			t.Errorf("quickstart output lacks %s: %s", f, out)
		}
	}
	if id, _ := identity.FromCertificate(readCert(t, filepath.Join(dir, "bob.pem"))); id != "spiffe://demo.example/lead/bob" {
		t.Errorf("bob.pem principal = %q", id)
	}
	if srv := readCert(t, filepath.Join(dir, "proxy.pem")); len(srv.DNSNames) != 1 || srv.DNSNames[0] != "localhost" {
		t.Errorf("proxy.pem DNS names = %v, want [localhost]", srv.DNSNames)
	}
	if id, _ := identity.FromCertificate(readCert(t, filepath.Join(dir, "bob-user.pem"))); id != "spiffe://demo.example/user/bob" {
		t.Errorf("bob-user.pem principal = %q, want bob's everyday identity", id)
	}
	// The audit signing key: usable as audit.signing_key, its .pub verifies
	// what it signs, and the private key is not world-readable.
	signer, err := audit.LoadSigner(filepath.Join(dir, "audit-ed25519.pem"))
	if err != nil {
		t.Fatalf("quickstart's audit key: %v", err)
	}
	pubPEM, err := os.ReadFile(filepath.Join(dir, "audit-ed25519.pub"))
	if err != nil {
		t.Fatal(err)
	}
	if pub, err := audit.ParsePublicKey(pubPEM); err != nil || !pub.Equal(signer.Public()) {
		t.Errorf("audit-ed25519.pub = %v, %v; want the signing key's public half", pub, err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "audit-ed25519.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("audit-ed25519.pem mode = %v, %v; want 0600", fi.Mode(), err)
	}
}

// TestEveryCommandHasExample: every runnable command documents itself with an
// example (a group only shows its help or names an unknown subcommand).
func TestEveryCommandHasExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && !c.HasSubCommands() && c.Example == "" && c.Name() != "help" && c.Name() != "completion" && c.Parent() != nil && c.Parent().Name() != "completion" {
			t.Errorf("ztpctl %s has no Example", c.CommandPath())
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCommand())
}
