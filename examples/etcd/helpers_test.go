package etcd_test

import (
	"testing"

	"github.com/ztp-dev/ztp/internal/exampletest"
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
	exampletest.MintCerts(t, dir, "ztp etcd example CA", map[string]string{"deployer": deployerID, "alice": aliceID})
}

// writeExampleConfig writes dir/ztp.yaml: the committed ztp.yaml with only what must differ
// in a test changed (listen and etcd addresses), its policies and protoset pointing back
// at this directory, and certs/ and data/ (created here) beside it in dir.
func writeExampleConfig(t *testing.T, dir, listen, etcdAddr string) string {
	t.Helper()
	return exampletest.WriteConfig(t, dir, listen, etcdAddr, "etcd.protoset")
}
