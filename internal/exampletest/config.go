package exampletest

import (
	"crypto/rand"
	"net"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/pki"
)

// MintCerts writes what an example's ztp.yaml tls section and its clients need into
// dir/certs: a CA named caName (ca.pem), the proxy's server certificate for 127.0.0.1 and
// localhost (proxy.pem), and a client certificate per entry of clients, name → SPIFFE ID
// (NAME.pem), each with its -key.pem.
func MintCerts(t *testing.T, dir, caName string, clients map[string]string) {
	t.Helper()
	certs := filepath.Join(dir, "certs")
	ca, err := pki.NewCA(caName)
	if err != nil {
		t.Fatalf("pki.NewCA: %v", err)
	}
	if err := ca.WriteFiles(certs, "ca"); err != nil {
		t.Fatalf("CA.WriteFiles: %v", err)
	}
	leaves := map[string]pki.LeafOptions{
		"proxy": {CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true},
	}
	for name, id := range clients {
		leaves[name] = pki.LeafOptions{CommonName: name, URIs: []string{id}, Client: true}
	}
	for name, opts := range leaves {
		leaf, err := ca.Issue(opts)
		if err != nil {
			t.Fatalf("Issue(%s): %v", name, err)
		}
		if err := pki.WriteFiles(certs, name, leaf); err != nil {
			t.Fatalf("WriteFiles(%s): %v", name, err)
		}
	}
	// The audit checkpoint key, as `ztpctl certs quickstart` writes it.
	priv, pub, err := audit.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "audit-ed25519.pem"), priv, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(certs, "audit-ed25519.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
}

// WriteConfig writes dir/ztp.yaml: the example's committed ztp.yaml (in the working
// directory, the example's) with only what must differ in a test changed — listen, the
// single upstream's address — its policies and its protoset (which must be named
// protoset in the file) pointing back at the example's directory, and certs/, data/ and
// checkpoints/ (created here) beside it in dir. Everything else — identity rules, policy
// mode, redaction, limits, budgets, break-glass — is exactly what the example ships,
// unless one of edits changes the parsed file before it is written.
func WriteConfig(t *testing.T, dir, listen, upstreamAddr, protoset string, edits ...func(doc map[string]any)) string {
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
		t.Fatalf("ztp.yaml: upstreams = %v, want one", doc["upstreams"])
	}
	up, ok1 := ups[0].(map[string]any)
	pol, ok2 := doc["policy"].(map[string]any)
	if !ok1 || !ok2 || up["descriptors"] != protoset {
		t.Fatalf("ztp.yaml changed shape; update exampletest.WriteConfig: upstreams[0] = %v, policy = %v, want descriptors %s", ups[0], doc["policy"], protoset)
	}
	doc["listen"] = listen
	up["address"] = upstreamAddr
	up["descriptors"] = filepath.Join(here, protoset)
	pol["paths"] = []any{filepath.Join(here, "policies") + string(filepath.Separator)}
	for _, edit := range edits {
		edit(doc)
	}

	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"data", "checkpoints"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	file := filepath.Join(dir, "ztp.yaml")
	if err := os.WriteFile(file, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return file
}
