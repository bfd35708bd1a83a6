package identity

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/ztp-dev/ztp/pki"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// Trailer keys the echo server uses to report what Authenticate returned.
const (
	trailerID     = "test-principal-id"
	trailerKind   = "test-principal-kind"
	trailerGroups = "test-principal-groups"
	trailerAuthn  = "test-principal-authn"
)

// echoServer is a real gRPC server over TLS on loopback whose only handler
// authenticates the call and echoes the principal in trailers.
type echoServer struct {
	addr  string
	calls atomic.Int32 // handler invocations: proves a failed handshake never reached it
}

func startEchoServer(t *testing.T, ca *pki.CA, clientAuth tls.ClientAuthType, auth *Authenticator) *echoServer {
	t.Helper()
	serverCert, err := ca.Issue(pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatalf("issue server cert: %v", err)
	}
	tlsConf := &tls.Config{
		Certificates: []tls.Certificate{serverCert.TLS},
		ClientAuth:   clientAuth,
		ClientCAs:    ca.Pool(),
		MinVersion:   tls.VersionTLS12,
	}
	es := &echoServer{}
	srv := grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.UnknownServiceHandler(func(_ any, stream grpc.ServerStream) error {
			es.calls.Add(1)
			p, err := auth.Authenticate(stream.Context())
			if err != nil {
				return err // carries UNAUTHENTICATED itself
			}
			stream.SetTrailer(metadata.Pairs(
				trailerID, p.ID, trailerKind, p.Kind,
				trailerGroups, strings.Join(p.Groups, ","), trailerAuthn, p.Authn,
			))
			return nil
		}),
	)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = srv.Serve(lis)
	}()
	t.Cleanup(func() {
		srv.Stop()
		<-served
	})
	es.addr = lis.Addr().String()
	return es
}

// call makes one streaming RPC with the given client certificate (nil: none)
// and metadata, returning the server's trailer.
func call(t *testing.T, addr string, roots *pki.CA, clientCert *pki.Leaf, md metadata.MD) (metadata.MD, error) {
	t.Helper()
	conf := &tls.Config{RootCAs: roots.Pool(), ServerName: "localhost", MinVersion: tls.VersionTLS12}
	if clientCert != nil {
		conf.Certificates = []tls.Certificate{clientCert.TLS}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		t.Fatalf("grpc.NewClient: %v", err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if md != nil {
		ctx = metadata.NewOutgoingContext(ctx, md)
	}
	stream, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/ztp.test.v1.Echo/WhoAmI")
	if err != nil {
		return nil, err
	}
	if err := stream.CloseSend(); err != nil {
		return nil, err
	}
	err = stream.RecvMsg(&emptypb.Empty{})
	if errors.Is(err, io.EOF) {
		return stream.Trailer(), nil
	}
	if err == nil {
		t.Fatalf("server sent a message; the echo server never does")
	}
	return nil, err
}

func TestAuthenticatorOverTLS(t *testing.T) {
	now := time.Now()
	ca, err := pki.NewCA("ztp test CA")
	if err != nil {
		t.Fatal(err)
	}
	foreignCA, err := pki.NewCA("ztp test CA") // same name, different key
	if err != nil {
		t.Fatal(err)
	}
	classifier, err := NewClassifier(testRules)
	if err != nil {
		t.Fatal(err)
	}
	auth := NewAuthenticator(classifier)

	issue := func(ca *pki.CA, o pki.LeafOptions) *pki.Leaf {
		t.Helper()
		l, err := ca.Issue(o)
		if err != nil {
			t.Fatalf("Issue(%+v): %v", o, err)
		}
		return l
	}
	deployer := issue(ca, pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true})
	alice := issue(ca, pki.LeafOptions{CommonName: "alice", Client: true})
	foreign := issue(foreignCA, pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true})
	expired := issue(ca, pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true, NotBefore: now.Add(-2 * time.Hour), NotAfter: now.Add(-time.Hour)})
	notYetValid := issue(ca, pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Client: true, NotBefore: now.Add(time.Hour)})
	serverOnly := issue(ca, pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer"}, Server: true})
	unmatched := issue(ca, pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/dev/sa/deployer"}, Client: true})
	twoIDs := issue(ca, pki.LeafOptions{URIs: []string{"spiffe://example.org/ns/prod/sa/deployer", "spiffe://example.org/user/alice"}, Client: true})
	badID := issue(ca, pki.LeafOptions{CommonName: "alice", URIs: []string{"spiffe://example.org/ns/prod/sa/x/"}, Client: true})

	require := startEchoServer(t, ca, tls.RequireAndVerifyClientCert, auth)
	ifGiven := startEchoServer(t, ca, tls.VerifyClientCertIfGiven, auth)
	// A misconfigured server that accepts any certificate unverified: the
	// authenticator must still refuse, because there is no verified chain.
	unverified := startEchoServer(t, ca, tls.RequireAnyClientCert, auth)

	tests := []struct {
		name         string
		server       *echoServer
		cert         *pki.Leaf
		md           metadata.MD
		wantCode     codes.Code
		wantID       string
		wantKind     string
		wantGroups   string
		wantMsg      string // substring of the status message
		wantNoCallIn bool   // the handler must not have run (handshake refused)
	}{
		{name: "spiffe automation", server: require, cert: deployer, wantCode: codes.OK,
			wantID: "spiffe://example.org/ns/prod/sa/deployer", wantKind: KindAutomation, wantGroups: "deployers"},
		{name: "common name human", server: require, cert: alice, wantCode: codes.OK,
			wantID: "cn:alice", wantKind: KindHuman, wantGroups: ""},
		{name: "spoofed principal metadata is ignored", server: require, cert: deployer,
			md:       metadata.Pairs("x-ztp-principal", "spiffe://evil", "x-ztp-kind", "human", "x-forwarded-client-cert", "URI=spiffe://example.org/user/root"),
			wantCode: codes.OK, wantID: "spiffe://example.org/ns/prod/sa/deployer", wantKind: KindAutomation, wantGroups: "deployers"},
		{name: "foreign CA", server: require, cert: foreign, wantCode: codes.Unavailable, wantNoCallIn: true},
		{name: "expired", server: require, cert: expired, wantCode: codes.Unavailable, wantNoCallIn: true},
		{name: "not yet valid", server: require, cert: notYetValid, wantCode: codes.Unavailable, wantNoCallIn: true},
		{name: "server-only certificate used as client", server: require, cert: serverOnly, wantCode: codes.Unavailable, wantNoCallIn: true},
		{name: "no certificate where one is required", server: require, cert: nil, wantCode: codes.Unavailable, wantNoCallIn: true},
		{name: "unmatched principal", server: require, cert: unmatched, wantCode: codes.Unauthenticated, wantMsg: `matches no rule: "spiffe://example.org/ns/dev/sa/deployer"`},
		{name: "two SPIFFE IDs", server: require, cert: twoIDs, wantCode: codes.Unauthenticated, wantMsg: "more than one URI SAN"},
		{name: "invalid SPIFFE ID does not fall back to CN", server: require, cert: badID, wantCode: codes.Unauthenticated, wantMsg: "invalid SPIFFE ID"},
		{name: "no certificate where optional", server: ifGiven, cert: nil, wantCode: codes.Unauthenticated, wantMsg: "no verified client certificate"},
		{name: "no certificate where optional, spoofed metadata", server: ifGiven, cert: nil,
			md: metadata.Pairs("x-ztp-principal", "spiffe://example.org/ns/prod/sa/deployer"), wantCode: codes.Unauthenticated, wantMsg: "no verified client certificate"},
		{name: "valid certificate where optional", server: ifGiven, cert: deployer, wantCode: codes.OK,
			wantID: "spiffe://example.org/ns/prod/sa/deployer", wantKind: KindAutomation, wantGroups: "deployers"},
		{name: "foreign certificate on an unverifying server", server: unverified, cert: foreign, wantCode: codes.Unauthenticated, wantMsg: "no verified client certificate"},
		{name: "own-CA certificate on an unverifying server", server: unverified, cert: deployer, wantCode: codes.Unauthenticated, wantMsg: "no verified client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.server.calls.Load()
			trailer, err := call(t, tt.server.addr, ca, tt.cert, tt.md)
			if got := status.Code(err); got != tt.wantCode {
				t.Fatalf("call: code %v (err %v), want %v", got, err, tt.wantCode)
			}
			if tt.wantNoCallIn {
				if n := tt.server.calls.Load() - before; n != 0 {
					t.Errorf("handler ran %d times; the handshake should have been refused", n)
				}
			}
			if tt.wantMsg != "" && !strings.Contains(status.Convert(err).Message(), tt.wantMsg) {
				t.Errorf("status message %q, want it to contain %q", status.Convert(err).Message(), tt.wantMsg)
			}
			if tt.wantCode != codes.OK {
				return
			}
			for _, kv := range []struct{ key, want string }{
				{trailerID, tt.wantID}, {trailerKind, tt.wantKind}, {trailerGroups, tt.wantGroups}, {trailerAuthn, AuthnMTLS},
			} {
				if got := trailer.Get(kv.key); len(got) != 1 || got[0] != kv.want {
					t.Errorf("trailer %s = %q, want [%q]", kv.key, got, kv.want)
				}
			}
		})
	}
}

// plainAuthInfo stands in for a non-TLS transport (insecure, ALTS, ...).
type plainAuthInfo struct{ credentials.CommonAuthInfo }

func (plainAuthInfo) AuthType() string { return "insecure" }

func TestAuthenticateWithoutTLS(t *testing.T) {
	classifier, err := NewClassifier([]Rule{{Match: "*", Kind: KindHuman}})
	if err != nil {
		t.Fatal(err)
	}
	ctxWith := func(ai credentials.AuthInfo) context.Context {
		return peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, AuthInfo: ai})
	}
	// Spoofed metadata must make no difference to any of these.
	spoof := func(ctx context.Context) context.Context {
		return metadata.NewIncomingContext(ctx, metadata.Pairs("x-ztp-principal", "cn:root"))
	}
	var nilTLSInfo *credentials.TLSInfo
	verified := &x509.Certificate{Subject: pkix.Name{CommonName: "alice"}}
	verifiedInfo := credentials.TLSInfo{State: tls.ConnectionState{HandshakeComplete: true, VerifiedChains: [][]*x509.Certificate{{verified}}}}
	// Sanity check: with a classifier, the same context authenticates, so
	// the nil cases below fail for the reason they claim.
	if p, err := NewAuthenticator(classifier).Authenticate(ctxWith(verifiedInfo)); err != nil || p.ID != "cn:alice" {
		t.Fatalf("Authenticate(verified cn:alice) = %+v, %v; want cn:alice", p, err)
	}
	tests := []struct {
		name string
		auth *Authenticator
		ctx  context.Context
		want error
	}{
		{"no peer", NewAuthenticator(classifier), spoof(context.Background()), ErrNoCertificate},
		{"insecure transport", NewAuthenticator(classifier), spoof(ctxWith(plainAuthInfo{})), ErrNoCertificate},
		{"nil AuthInfo", NewAuthenticator(classifier), spoof(ctxWith(nil)), ErrNoCertificate},
		{"nil *TLSInfo", NewAuthenticator(classifier), spoof(ctxWith(nilTLSInfo)), ErrNoCertificate},
		{"TLS without verified chain", NewAuthenticator(classifier), spoof(ctxWith(credentials.TLSInfo{State: tls.ConnectionState{HandshakeComplete: true}})), ErrNoCertificate},
		{"verified chain, nil classifier", NewAuthenticator(nil), spoof(ctxWith(verifiedInfo)), ErrUnknownPrincipal},
		{"verified chain, nil authenticator", nil, spoof(ctxWith(verifiedInfo)), ErrUnknownPrincipal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := tt.auth.Authenticate(tt.ctx)
			if !errors.Is(err, ErrUnauthenticated) || !errors.Is(err, tt.want) {
				t.Fatalf("Authenticate() = %+v, %v; want errors wrapping ErrUnauthenticated and %v", p, err, tt.want)
			}
			if p.ID != "" {
				t.Errorf("Authenticate() returned principal %q alongside an error", p.ID)
			}
			if got := status.Code(err); got != codes.Unauthenticated {
				t.Errorf("status.Code(err) = %v, want Unauthenticated", got)
			}
		})
	}
}
