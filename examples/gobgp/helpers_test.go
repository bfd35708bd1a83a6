package gobgp_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ztp-dev/ztp/pki"
)

// The principals of the example: automation that injects routes, a human, and a human
// who approves break-glass (the ids `ztpctl certs quickstart` mints).
const (
	injectorID = "spiffe://example.org/ns/prod/sa/injector"
	aliceID    = "spiffe://example.org/user/alice"
	bobID      = "spiffe://example.org/lead/bob"
)

// mintCerts writes what ztp.yaml's tls section and the clients need into dir/certs: the CA
// (ca.pem), the proxy's server certificate for 127.0.0.1 and localhost (proxy.pem), and a
// client certificate per principal (injector.pem, alice.pem, bob.pem), each with its
// -key.pem.
func mintCerts(t *testing.T, dir string) {
	t.Helper()
	certs := filepath.Join(dir, "certs")
	ca, err := pki.NewCA("ztp gobgp example CA")
	if err != nil {
		t.Fatalf("pki.NewCA: %v", err)
	}
	if err := ca.WriteFiles(certs, "ca"); err != nil {
		t.Fatalf("CA.WriteFiles: %v", err)
	}
	leaves := []struct {
		name string
		opts pki.LeafOptions
	}{
		{"proxy", pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true}},
		{"injector", pki.LeafOptions{CommonName: "injector", URIs: []string{injectorID}, Client: true}},
		{"alice", pki.LeafOptions{CommonName: "alice", URIs: []string{aliceID}, Client: true}},
		{"bob", pki.LeafOptions{CommonName: "bob", URIs: []string{bobID}, Client: true}},
	}
	for _, l := range leaves {
		leaf, err := ca.Issue(l.opts)
		if err != nil {
			t.Fatalf("Issue(%s): %v", l.name, err)
		}
		if err := pki.WriteFiles(certs, l.name, leaf); err != nil {
			t.Fatalf("WriteFiles(%s): %v", l.name, err)
		}
	}
}

// writeExampleConfig writes dir/ztp.yaml: the committed ztp.yaml with only what must differ
// in a test changed (listen and gobgpd addresses), its policies and protoset pointing back
// at this directory, and certs/ and data/ (created here) beside it in dir. Everything else
// — identity rules, policy mode, redaction, rate limits, budgets, break-glass — is exactly
// what the example ships.
func writeExampleConfig(t *testing.T, dir, listen, gobgpdAddr string) string {
	t.Helper()
	raw, err := os.ReadFile("ztp.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("ztp.yaml: %v", err)
	}
	here, err := filepath.Abs(".")
	if err != nil {
		t.Fatal(err)
	}
	ups, _ := doc["upstreams"].([]any)
	if len(ups) != 1 {
		t.Fatalf("ztp.yaml: upstreams = %v, want one (gobgp)", doc["upstreams"])
	}
	up, ok1 := ups[0].(map[string]any)
	pol, ok2 := doc["policy"].(map[string]any)
	if !ok1 || !ok2 || up["descriptors"] != "gobgp.protoset" {
		t.Fatalf("ztp.yaml changed shape; update writeExampleConfig: upstreams[0] = %v, policy = %v", ups[0], doc["policy"])
	}
	doc["listen"] = listen
	up["address"] = gobgpdAddr
	up["descriptors"] = filepath.Join(here, "gobgp.protoset")
	pol["paths"] = []any{filepath.Join(here, "policies") + string(filepath.Separator)}

	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "ztp.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
