package main

import (
	"crypto/tls"
	"embed"
	"fmt"
	"net"
	"os"
	"path/filepath"

	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/pki"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// The principal the load generator calls the full proxy as: automation in
// group deployers, which the bench policy lets make changes.
const benchPrincipal = "spiffe://example.org/ns/prod/sa/deployer"

//go:embed testdata/policies/bench.rego
var policyFS embed.FS

// proxyConfig is ztp.yaml for the full path: the shape of examples/etcd/ztp.yaml
// (mTLS, principals, descriptors, policy, rate limits, redaction, break-glass)
// in front of the benchmark's backend. The automation rule's rate limit is far
// above what two cores can send: it is evaluated on every call and never
// refuses one. Logging stays at its default level, info, which writes one line
// per decision, as a deployment would.
const proxyConfig = `listen: 127.0.0.1:0
tls:
  cert: proxy.pem
  key: proxy-key.pem
  client_ca: ca.pem
  client_auth: require
identity:
  principals:
    - match: "spiffe://example.org/ns/prod/sa/*"
      kind: automation
      groups: [deployers]
    - match: "spiffe://example.org/user/*"
      kind: human
      groups: [sre]
    - match: "spiffe://example.org/lead/*"
      kind: human
      groups: [sre, sre-leads]
upstreams:
  - name: backend
    address: %s
    services: ["grpc.testing.*"]
    descriptors: test.protoset
    tls: { insecure: true }
policy:
  paths: [policies/]
  mode: enforce
rate_limits:
  - match: { kind: human }
    rps: 5
    burst: 20
  - match: { kind: automation, method: "/grpc.testing.TestService/*" }
    rps: 10000000
    burst: 10000000
audit:
  path: audit.db
  redact: ["password", "*.secret"]
breakglass:
  max_duration: 1h
  approvals_required: 1
  approver_groups: [sre-leads]
metrics:
  listen: 127.0.0.1:0
  pprof: true
log:
  format: json
`

// benchTLS is what the clients of the TLS paths present and trust.
type benchTLS struct {
	client *tls.Config
	// Files the servers read.
	cert, key, ca string
}

// writeProxyDir writes the full proxy's directory: a fresh CA, the server
// certificate, the policy, the protoset and ztp.yaml pointing at backend.
func writeProxyDir(dir, backend string) (*benchTLS, error) {
	ca, err := pki.NewCA("ztp-bench CA")
	if err != nil {
		return nil, err
	}
	srv, err := ca.Issue(pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		return nil, err
	}
	if err := pki.WriteFiles(dir, "proxy", srv); err != nil {
		return nil, err
	}
	client, err := ca.Issue(pki.LeafOptions{CommonName: "ztp-bench", URIs: []string{benchPrincipal}, Client: true})
	if err != nil {
		return nil, err
	}
	cr := &benchTLS{
		client: &tls.Config{RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{client.TLS}, MinVersion: tls.VersionTLS12},
		cert:   filepath.Join(dir, "proxy.pem"),
		key:    filepath.Join(dir, "proxy-key.pem"),
		ca:     filepath.Join(dir, "ca.pem"),
	}
	if err := os.WriteFile(cr.ca, ca.CertPEM, 0o644); err != nil {
		return nil, err
	}
	rego, err := policyFS.ReadFile("testdata/policies/bench.rego")
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "policies"), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "policies", "bench.rego"), rego, 0o644); err != nil {
		return nil, err
	}
	if err := proxytest.WriteProtosetFile(filepath.Join(dir, "test.protoset"), testgrpc.File_grpc_testing_test_proto); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "ztp.yaml"), fmt.Appendf(nil, proxyConfig, backend), 0o644); err != nil {
		return nil, err
	}
	return cr, nil
}
