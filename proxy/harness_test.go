package proxy

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
)

// Principals the test CA issues certificates for.
const (
	deployerID = "spiffe://example.org/ns/prod/sa/deployer"
	aliceID    = "spiffe://example.org/user/alice"
	strangerID = "spiffe://other.example/ns/x/sa/y" // matches no principal rule
)

const testPolicy = `package ztp

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

// backend is the real upstream: grpc's interop TestService on loopback, counting
// what actually reached it.
type backend struct {
	testgrpc.UnimplementedTestServiceServer
	calls      atomic.Int64 // calls that reached a handler
	messages   atomic.Int64 // client messages the handlers received
	mu         sync.Mutex
	lastMD     metadata.MD
	deadline   time.Duration // remaining time of the last unary call's deadline (0 = none)
	canceled   chan struct{} // closed when a FullDuplexCall saw its context end
	cancelOnce sync.Once
	addr       string
}

func (b *backend) seen(ctx context.Context) {
	b.calls.Add(1)
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

func (b *backend) md() metadata.MD {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastMD
}

func (b *backend) EmptyCall(ctx context.Context, _ *testgrpc.Empty) (*testgrpc.Empty, error) {
	b.seen(ctx)
	b.messages.Add(1)
	return &testgrpc.Empty{}, nil
}

func (b *backend) UnaryCall(ctx context.Context, req *testgrpc.SimpleRequest) (*testgrpc.SimpleResponse, error) {
	b.seen(ctx)
	b.messages.Add(1)
	if s := req.GetResponseStatus(); s != nil && s.Code != 0 {
		return nil, status.Error(codes.Code(s.Code), s.Message)
	}
	return &testgrpc.SimpleResponse{Payload: req.GetPayload(), Username: "backend"}, nil
}

func (b *backend) StreamingOutputCall(req *testgrpc.StreamingOutputCallRequest, ss grpc.ServerStreamingServer[testgrpc.StreamingOutputCallResponse]) error {
	b.seen(ss.Context())
	b.messages.Add(1)
	for _, p := range req.GetResponseParameters() {
		body := make([]byte, p.GetSize())
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: body}}); err != nil {
			return err
		}
	}
	return nil
}

func (b *backend) StreamingInputCall(ss grpc.ClientStreamingServer[testgrpc.StreamingInputCallRequest, testgrpc.StreamingInputCallResponse]) error {
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
		b.messages.Add(1)
		total += int32(len(req.GetPayload().GetBody()))
	}
}

func (b *backend) FullDuplexCall(ss grpc.BidiStreamingServer[testgrpc.StreamingOutputCallRequest, testgrpc.StreamingOutputCallResponse]) error {
	b.seen(ss.Context())
	for {
		req, err := ss.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			if ss.Context().Err() != nil {
				b.cancelOnce.Do(func() { close(b.canceled) })
			}
			return err
		}
		b.messages.Add(1)
		if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: req.GetPayload()}); err != nil {
			return err
		}
	}
}

func startBackend(t testing.TB) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{addr: lis.Addr().String(), canceled: make(chan struct{})}
	s := grpc.NewServer()
	testgrpc.RegisterTestServiceServer(s, b)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return b
}

// writeProtoset writes a FileDescriptorSet holding the file that declares fd and all
// of its dependencies, as protoc --include_imports would.
func writeProtoset(t testing.TB, path string, fd protoreflect.FileDescriptor) {
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

// env is one proxy in front of one backend, with its own CA, policy and audit file.
type env struct {
	dir     string
	ca      *pki.CA
	backend *backend
	srv     *Server
	addr    string
}

type envOptions struct {
	policy string // Rego source; default testPolicy
	mode   string // policy.mode
	limits string // YAML lines under limits:
	// reflection routes through server reflection instead of a protoset (the backend
	// then has none, so requests are undecoded).
	noDescriptors bool
}

func newEnv(t testing.TB, o envOptions) *env {
	t.Helper()
	e := &env{dir: t.TempDir(), backend: startBackend(t)}
	ca, err := pki.NewCA("ztp test CA")
	if err != nil {
		t.Fatal(err)
	}
	e.ca = ca
	leaf, err := ca.Issue(pki.LeafOptions{CommonName: "ztp-proxy", DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}, Server: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFiles(e.dir, "proxy", leaf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "ca.pem"), ca.CertPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	if o.policy == "" {
		o.policy = testPolicy
	}
	if o.mode == "" {
		o.mode = "enforce"
	}
	if err := os.MkdirAll(filepath.Join(e.dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "policies", "test.rego"), []byte(o.policy), 0o644); err != nil {
		t.Fatal(err)
	}
	desc := "    descriptors: test.protoset\n"
	if o.noDescriptors {
		desc = ""
	} else {
		writeProtoset(t, filepath.Join(e.dir, "test.protoset"), testgrpc.File_grpc_testing_test_proto)
	}
	yaml := fmt.Sprintf(`listen: 127.0.0.1:0
tls:
  cert: proxy.pem
  key: proxy-key.pem
  client_ca: ca.pem
identity:
  principals:
    - match: "spiffe://example.org/ns/prod/sa/*"
      kind: automation
      groups: [deployers]
    - match: "spiffe://example.org/user/*"
      kind: human
      groups: [sre]
upstreams:
  - name: test
    address: %s
    services: ["grpc.testing.*"]
%s    tls: { insecure: true }
policy:
  paths: [policies/]
  mode: %s
audit:
  path: audit.db
limits:
%s`, e.backend.addr, desc, o.mode, o.limits)
	cfg, err := config.Parse(filepath.Join(e.dir, "ztp.yaml"), []byte(yaml))
	if err != nil {
		t.Fatalf("config: %v\n%s", err, yaml)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	e.srv, err = New(ctx, cfg, Options{Logger: log})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- e.srv.Serve(lis) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.srv.Shutdown(ctx)
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return e
}

// dial connects to the proxy with a certificate for id issued by the env's CA.
func (e *env) dial(t testing.TB, id string) testgrpc.TestServiceClient {
	t.Helper()
	leaf, err := e.ca.Issue(pki.LeafOptions{CommonName: "client", URIs: []string{id}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	return e.dialTLS(t, &tls.Config{Certificates: []tls.Certificate{leaf.TLS}, RootCAs: e.ca.Pool(), ServerName: "localhost"})
}

func (e *env) dialTLS(t testing.TB, tc *tls.Config) testgrpc.TestServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(e.addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// records returns every audit record written so far, in seq order.
func (e *env) records(t *testing.T) []*audit.Record {
	t.Helper()
	e.srv.Pipeline().WaitOutcomes()
	var out []*audit.Record
	err := e.srv.AuditStore().Scan(context.Background(), 1, func(r *audit.Record) error {
		out = append(out, r)
		return nil
	})
	if err != nil {
		t.Fatalf("Scan: %v", err)
	}
	return out
}

// requests returns the request records for method.
func (e *env) requests(t *testing.T, method string) []*audit.Record {
	var out []*audit.Record
	for _, r := range e.records(t) {
		if r.Type == "request" && r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func wantCode(t *testing.T, call string, err error, code codes.Code, msgPart string) {
	t.Helper()
	st := status.Convert(err)
	if st.Code() != code || !strings.Contains(st.Message(), msgPart) {
		t.Errorf("%s = %v (%q), want %v containing %q", call, st.Code(), st.Message(), code, msgPart)
	}
}

func (b *backend) deadlineLeft() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.deadline
}
