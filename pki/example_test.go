package pki_test

import (
	"crypto/x509"
	"fmt"

	"github.com/ztp-dev/ztp/pki"
)

func ExampleCA_Issue() {
	ca, err := pki.NewCA("ztp dev CA")
	if err != nil {
		panic(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{
		URIs:   []string{"spiffe://example.org/ns/prod/sa/deployer"},
		Client: true,
	})
	if err != nil {
		panic(err)
	}
	_, err = leaf.Cert.Verify(x509.VerifyOptions{
		Roots:     ca.Pool(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	fmt.Println(leaf.Cert.URIs[0], "verifies as client:", err == nil)
	// Output: spiffe://example.org/ns/prod/sa/deployer verifies as client: true
}
