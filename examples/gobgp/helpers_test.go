package gobgp_test

import (
	"os"
	"testing"

	"github.com/ztp-dev/ztp/internal/exampletest"
)

// The principals of the example: automation that injects routes, a human, and a human
// who approves break-glass.
const (
	injectorID = "spiffe://example.org/ns/prod/sa/injector"
	aliceID    = "spiffe://example.org/user/alice"
	bobID      = "spiffe://example.org/lead/bob"
)

// mintCerts writes the CA, the proxy's certificate and injector.pem, alice.pem and bob.pem
// (each with its -key.pem) into dir/certs.
func mintCerts(t *testing.T, dir string) {
	t.Helper()
	exampletest.MintCerts(t, dir, "ztp gobgp example CA", map[string]string{"injector": injectorID, "alice": aliceID, "bob": bobID})
}

// writeExampleConfig writes dir/ztp.yaml: the committed one with the listen and gobgpd
// addresses changed and its paths made absolute.
func writeExampleConfig(t *testing.T, dir, listen, gobgpdAddr string) string {
	t.Helper()
	return exampletest.WriteConfig(t, dir, listen, gobgpdAddr, "gobgp.protoset")
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
