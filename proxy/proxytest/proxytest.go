// Package proxytest starts a real ztp-proxy in front of a real gRPC backend for
// tests: a CA and certificates minted for the test, a policy, a protoset, a
// config parsed by the config package and an audit file in t.TempDir().
package proxytest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/config"
	"github.com/ztp-dev/ztp/pki"
	"github.com/ztp-dev/ztp/proxy"
)

// Principals the test CA issues certificates for.
const (
	DeployerID = "spiffe://example.org/ns/prod/sa/deployer"
	AliceID    = "spiffe://example.org/user/alice"
	StrangerID = "spiffe://other.example/ns/x/sa/y" // matches no principal rule
)

const DefaultPolicy = `package ztp

default allow := false

allow if input.principal.kind == "automation"

allow if {
	input.principal.kind == "human"
	input.rpc in {"EmptyCall", "StreamingOutputCall"}
}

deny contains "humans may not upload" if {
	input.principal.kind == "human"
	input.rpc == "StreamingInputCall"
}

forbid contains "payload 'forbidden' is never allowed" if {
	base64.decode(input.request.payload.body) == "forbidden"
}
`

// Backend is the real upstream: grpc's interop TestService on loopback, counting
// what actually reached it.
type Backend struct {
	testgrpc.UnimplementedTestServiceServer
	Calls      atomic.Int64 // calls that reached a handler
	Messages   atomic.Int64 // client messages the handlers received
	mu         sync.Mutex
	lastMD     metadata.MD
	deadline   time.Duration // remaining time of the last unary call's deadline (0 = none)
	Canceled   chan struct{} // closed when a FullDuplexCall saw its context end
	cancelOnce sync.Once
	Addr       string
	srv        *grpc.Server
}

// Stop stops the backend (for tests of an upstream that went away).
func (b *Backend) Stop() { b.srv.Stop() }

func (b *Backend) seen(ctx context.Context) {
	b.Calls.Add(1)
	md, _ := metadata.FromIncomingContext(ctx)
	b.mu.Lock()
	b.lastMD = md.Copy()
	b.deadline = 0
	if d, ok := ctx.Deadline(); ok {
		b.deadline = time.Until(d)
	}
	b.mu.Unlock()
	grpc.SetHeader(ctx, metadata.Pairs("x-backend-header", "h1"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-backend-trailer", "t1"))
}

// MD returns the metadata of the last call that reached the backend.
func (b *Backend) MD() metadata.MD {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastMD
}

func (b *Backend) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	b.seen(ctx)
	b.Messages.Add(1)
	return &testgrpc.Empty{}, nil
}

func (b *Backend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.seen(ctx)
	b.Messages.Add(1)
	if string(req.GetPayload().GetBody()) == "hang" {
		<-ctx.Done() // a slow upstream: answers only when the caller gives up
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if s := req.GetResponseStatus(); s != nil && s.Code != 0 {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload(), Username: "backend"}, nil
}

func (b *Backend) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	b.seen(ss.Context())
	b.Messages.Add(1)
	for _, p := range req.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

func (b *Backend) StreamingInputCall(ss grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
	b.seen(ss.Context())
	var total int32
	for {
		req, err := ss.Recv()
		if err == io.EOF {
			return ss.SendAndClose(&testgrpc.StreamingInputCallResponse{AggregatedPayloadSize: total})
		}
		if err != nil {
			return err
		}
		b.Messages.Add(1)
		total += int32(len(req.GetPayload().GetBody()))
	}
}

func (b *Backend) FullDuplexCall(ss grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	b.seen(ss.Context())
	for {
		req, err := ss.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ss.Context().Err() != nil {
				b.cancelOnce.Do(func() { close(b.Canceled) })
			}
			return err
		}
		b.Messages.Add(1)
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func StartBackend(t testing.TB) *Backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &Backend{Addr: lis.Addr().String(), Canceled: make(chan struct{})}
	s := grpc.NewServer()
	b.srv = s
	testgrpc.RegisterTestServiceServer(s, b)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// WriteProtoset writes a FileDescriptorSet holding the file that declares fd and all
// of its dependencies, as protoc --include_imports would.
func WriteProtoset(t testing.TB, path string, fd protoreflect.FileDescriptor) {
	t.Helper()
	set := &descriptorpb.FileDescriptorSet{}
	seen := map[string]bool{}
	var add func(protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		set.File = append(set.File, protodesc.ToFileDescriptorProto(f))
	}
	add(fd)
	b, err := proto.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// Env is one proxy in front of one backend, with its own CA, policy and audit file.
type Env struct {
	Dir     string
	CA      *pki.CA
	CAFile  string
	Backend *Backend
	Server  *proxy.Server
	Addr    string
}

// Options shape the proxy a test starts.
type Options struct {
	Policy string // Rego source of policies/test.rego; default DefaultPolicy
	Mode   string // policy.mode
	Limits string // YAML lines under limits:
	Audit  string // extra YAML lines under audit: (e.g. "  readers: [auditors]\n")
	Extra  string // extra top-level YAML (rate_limits:, budgets:, breakglass:, …)
	// NoDescriptors configures no protoset: requests reach the policy undecoded.
	NoDescriptors bool
	// Proxy adjusts the proxy.Options (clock, logger) before the server is built.
	Proxy func(*proxy.Options)
}

// Principal rules every Env configures. Ids under example.org/lead/ are humans in
// sre and sre-leads; under example.org/auditor/ humans in auditors.
const principalRules = `    - match: "spiffe://example.org/ns/prod/sa/*"
      kind: automation
      groups: [deployers]
    - match: "spiffe://example.org/user/*"
      kind: human
      groups: [sre]
    - match: "spiffe://example.org/lead/*"
      kind: human
      groups: [sre, sre-leads]
    - match: "spiffe://example.org/auditor/*"
      kind: human
      groups: [auditors]
`

// Start mints certificates, writes policy, protoset and config into t.TempDir(),
// starts the backend and the proxy, and stops both in t.Cleanup.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	e := &Env{Dir: t.TempDir(), Backend: StartBackend(t)}
	ca, err := pki.NewCA("ztp test CA")
	if err != nil {
		t.Fatal(err)
	}
	e.CA = ca
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(e.Dir, "proxy", leaf); err != nil {
		t.Fatal(err)
	}
	e.CAFile = filepath.Join(e.Dir, "ca.pem")
	if err := os.WriteFile(e.CAFile, ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if o.Policy == "" {
		o.Policy = DefaultPolicy
	}
	if o.Mode == "" {
		o.Mode = "enforce"
	}
	if err := os.MkdirAll(filepath.Join(e.Dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "policies", "test.rego"), []byte(o.Policy), 0o644); err != nil {
		t.Fatal(err)
	}
	desc := "    descriptors: test.protoset\n"
	if o.NoDescriptors {
		desc = ""
	} else {
		WriteProtoset(t, filepath.Join(e.Dir, "test.protoset"), testgrpc.File_grpc_testing_test_proto)
	}
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
tls:
  cert: proxy.pem
  key: proxy-key.pem
  client_ca: ca.pem
identity:
  principals:
%supstreams:
  - name: test
    address: %s
    services: ["grpc.testing.*"]
%s    tls: { insecure: true }
policy:
  paths: [policies/]
  mode: %s
audit:
  path: audit.db
%slimits:
%s%s`, principalRules, e.Backend.Addr, desc, o.Mode, o.Audit, o.Limits, o.Extra)
	// Written to disk too, so Server.Reload (SIGHUP) can re-read it.
	if err := os.WriteFile(filepath.Join(e.Dir, "ztp.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse(filepath.Join(e.Dir, "ztp.yaml"), []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	po := proxy.Options{Logger: log}
	if o.Proxy != nil {
		o.Proxy(&po)
	}
	e.Server, err = proxy.New(ctx, cfg, po)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.Addr = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.Server.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Server.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// Issue mints a client certificate for id.
func (e *Env) Issue(t testing.TB, id string) *pki.Leaf {
	t.Helper()
	leaf, err := e.CA.Issue(pki.LeafOptions{CommonName: "client", URIs: []string{id}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return leaf
}

// ClientFiles writes a client certificate for id and returns the cert and key paths
// (for CLI tests: ztpctl --cert/--key).
func (e *Env) ClientFiles(t testing.TB, id string) (cert, key string) {
	t.Helper()
	dir := t.TempDir()
	if err := pki.WriteFiles(dir, "client", e.Issue(t, id)); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
}

// Conn connects to the proxy with a certificate for id.
func (e *Env) Conn(t testing.TB, id string) *grpc.ClientConn {
	t.Helper()
	return e.ConnTLS(t, &tls.Config{Certificates: []tls.Certificate{e.Issue(t, id).TLS}, RootCAs: e.CA.Pool(), ServerName: "localhost"})
}

// ConnTLS connects to the proxy with an arbitrary client TLS config.
func (e *Env) ConnTLS(t testing.TB, tc *tls.Config) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(e.Addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// Dial returns a TestService client authenticated as id.
func (e *Env) Dial(t testing.TB, id string) testgrpc.TestServiceClient {
	return testgrpc.NewTestServiceClient(e.Conn(t, id))
}

// DialTLS returns a TestService client with an arbitrary client TLS config.
func (e *Env) DialTLS(t testing.TB, tc *tls.Config) testgrpc.TestServiceClient {
	return testgrpc.NewTestServiceClient(e.ConnTLS(t, tc))
}

// Records returns every audit record written so far, in seq order (after the
// outcome records of finished calls are in).
func (e *Env) Records(t testing.TB) []*audit.Record {
	t.Helper()
	e.Server.Pipeline().WaitOutcomes()
	var out []*audit.Record
	err := e.Server.AuditStore().Scan(context.Background(), 1, func(r *audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// Requests returns the request records for method.
func (e *Env) Requests(t testing.TB, method string) []*audit.Record {
	var out []*audit.Record
	for _, r := range e.Records(t) {
		if r.Type == "request" && r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// Ctx returns a context that ends with the test, 20s at most.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// WantCode fails t unless err has code and a message containing msgPart.
func WantCode(t testing.TB, call string, err error, code codes.Code, msgPart string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Errorf("%s = %v (%q), want %v containing %q", call, st.Code(), st.Message(), code, msgPart)
	}
}

// DeadlineLeft is the remaining deadline the last call had on arrival (0: none).
func (b *Backend) DeadlineLeft() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deadline
}
