package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"testing"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/ztp-dev/ztp/pki"
)

// BenchmarkAuthenticate measures the per-call cost the proxy pays: peer
// lookup, SPIFFE ID validation and classification against the test rules
// (the matching rule is the second of four).
func BenchmarkAuthenticate(b *testing.B) {
	ca, err := pki.NewCA("bench CA")
	if err != nil {
		b.Fatal(err)
	}
	leaf, err := ca.Issue(pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true})
	if err != nil {
		b.Fatal(err)
	}
	c, err := NewClassifier(testRules)
	if err != nil {
		b.Fatal(err)
	}
	a := NewAuthenticator(c)
	ctx := peer.NewContext(context.Background(), &peer.Peer{
		Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 4242},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{
			HandshakeComplete: true,
			VerifiedChains:    [][]*x509.Certificate{{leaf.Cert, ca.Cert}},
		}},
	})
	b.ReportAllocs()
	for b.Loop() {
		p, err := a.Authenticate(ctx)
		if err != nil || p.Kind != KindAutomation {
			b.Fatalf("Authenticate = %+v, %v", p, err)
		}
	}
}
