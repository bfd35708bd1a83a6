package etcd_test

import (
	"net"
	"os"
	"path/filepath"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/ztp-dev/ztp/pki"
)

// The principals of the example: automation that deploys, and a human.
const (
	deployerID = "spiffe://example.org/ns/prod/sa/deployer"
	aliceID    = "spiffe://example.org/user/alice"
)

// mintCerts writes what ztp.yaml's tls section and the clients need into dir/certs: the CA
// (ca.pem), the proxy's server certificate for 127.0.0.1 and localhost (proxy.pem), and a
// client certificate per principal (deployer.pem, alice.pem), each with its -key.pem.
func mintCerts(t *testing.T, dir string) {
	t.Helper()
	certs := filepath.Join(dir, "certs")
	ca, err := pki.NewCA("ztp etcd example CA")
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
		{"deployer", pki.LeafOptions{CommonName: "deployer", URIs: []string{deployerID}, Client: true}},
		{"alice", pki.LeafOptions{CommonName: "alice", URIs: []string{aliceID}, Client: true}},
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
// in a test changed (listen and etcd addresses), its policies and protoset pointing back
// at this directory, and certs/ and data/ (created here) beside it in dir. Everything else
// — identity rules, policy mode, redaction, limits — is exactly what the example ships.
// Each edit may change the parsed ztp.yaml before it is written.
func writeExampleConfig(t *testing.T, dir, listen, etcdAddr string, edits ...func(doc map[string]any)) string {
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
		t.Fatalf("ztp.yaml: upstreams = %v, want one (etcd)", doc["upstreams"])
	}
	up, ok1 := ups[0].(map[string]any)
	pol, ok2 := doc["policy"].(map[string]any)
	if !ok1 || !ok2 || up["descriptors"] != "etcd.protoset" {
		t.Fatalf("ztp.yaml changed shape; update writeExampleConfig: upstreams[0] = %v, policy = %v", ups[0], doc["policy"])
	}
	doc["listen"] = listen
	up["address"] = etcdAddr
	up["descriptors"] = filepath.Join(here, "etcd.protoset")
	pol["paths"] = []any{filepath.Join(here, "policies") + string(filepath.Separator)}
	for _, edit := range edits {
		edit(doc)
	}

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
