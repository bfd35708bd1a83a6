package etcd_test

import (
	"testing"

	"github.com/ztp-dev/ztp/internal/exampletest"
)

// The principals of the example: automation that deploys, a human, a lead who
// holds an everyday identity and an approver identity (bob), and another lead.
const (
	deployerID = "spiffe://example.org/ns/prod/sa/deployer"
	aliceID    = "spiffe://example.org/user/alice"
	bobUserID  = "spiffe://example.org/user/bob"
	bobLeadID  = "spiffe://example.org/lead/bob"
	carolID    = "spiffe://example.org/lead/carol"
)

// mintCerts writes what ztp.yaml's tls section and the clients need into dir/certs: the CA
// (ca.pem), the proxy's server certificate for 127.0.0.1 and localhost (proxy.pem), and a
// client certificate per principal (deployer.pem, alice.pem, bob-user.pem, bob.pem, carol.pem), each
// with its -key.pem — and the audit checkpoint key (audit-ed25519.pem and .pub), as
// `ztpctl certs quickstart` writes them.
func mintCerts(t *testing.T, dir string) {
	t.Helper()
	exampletest.MintCerts(t, dir, "ztp etcd example CA", map[string]string{
		"deployer": deployerID, "alice": aliceID, "bob-user": bobUserID, "bob": bobLeadID, "carol": carolID,
	})
}

// writeExampleConfig writes dir/ztp.yaml: the committed ztp.yaml with only what must differ
// in a test changed (listen and etcd addresses), its policies and protoset pointing back
// at this directory, and certs/, data/ and checkpoints/ (created here) beside it in dir.
// Everything else — identity rules, policy mode, redaction, limits — is exactly what the
// example ships. Each edit may change the parsed ztp.yaml before it is written.
func writeExampleConfig(t *testing.T, dir, listen, etcdAddr string, edits ...func(doc map[string]any)) string {
	t.Helper()
	return exampletest.WriteConfig(t, dir, listen, etcdAddr, "etcd.protoset", edits...)
}
