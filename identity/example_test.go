package identity_test

import (
	"fmt"

	"github.com/ztp-dev/ztp/identity"
)

func ExampleClassifier_Classify() {
	c, err := identity.NewClassifier([]identity.Rule{
		{Match: "spiffe://example.org/ns/prod/sa/*", Kind: identity.KindAutomation, Groups: []string{"deployers"}},
		{Match: "spiffe://example.org/user/*", Kind: identity.KindHuman, Groups: []string{"sre"}},
	})
	if err != nil {
		panic(err)
	}
	for _, id := range []string{
		"spiffe://example.org/ns/prod/sa/deployer",
		"spiffe://example.org/user/alice",
		"spiffe://example.org/ns/prod/sa/deployer/nested", // '*' does not cross '/'
	} {
		p, ok := c.Classify(id, identity.AuthnMTLS)
		fmt.Println(id, ok, p.Kind, p.Groups)
	}
	// Output:
	// spiffe://example.org/ns/prod/sa/deployer true automation [deployers]
	// spiffe://example.org/user/alice true human [sre]
	// spiffe://example.org/ns/prod/sa/deployer/nested false  []
}
