// Package proxytest starts a real ztp-proxy in front of a real gRPC backend for
// tests: a CA and certificates minted for the test, a policy, a protoset, a
// config parsed by the config package and an audit file in t.TempDir(). The
// files stay there, so a test can rewrite the config and reload, restart the
// proxy on the same audit file, or run the ztp-proxy binary on them.
package proxytest

import (
	"bytes"
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
	"github.com/ztp-dev/ztp/internal/testjwt"
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

	// Events feeds StreamingOutputCalls whose payload is "watch": each value
	// sent is one response, as a watch delivers changes, until the call ends;
	// WatchEnded then receives its context's error.
	Events     chan []byte
	WatchEnded chan error
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
	if string(req.GetPayload().GetBody()) == "watch" {
		for {
			select {
			case ev := <-b.Events:
				if err := ss.Send(&testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: ev}}); err != nil {
					return err
				}
			case <-ss.Context().Done():
				b.WatchEnded <- ss.Context().Err()
				return ss.Context().Err()
			}
		}
	}
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
	b := &Backend{Addr: lis.Addr().String(), Canceled: make(chan struct{}), Events: make(chan []byte), WatchEnded: make(chan error, 16)}
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
	if err := WriteProtosetFile(path, fd); err != nil {
		t.Fatal(err)
	}
}

// WriteProtosetFile is WriteProtoset for callers without a testing.TB (the
// benchmark tool).
func WriteProtosetFile(path string, fd protoreflect.FileDescriptor) error {
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
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// Env is one proxy in front of one backend, with its own CA, policy and audit file.
type Env struct {
	Dir       string
	CA        *pki.CA
	CAFile    string
	Config    string   // Dir/ztp.yaml: Server.Reload and Restart read it
	AuditFile string   // the audit log's path
	Backend   *Backend // nil when Options.Upstream names another one
	Server    *proxy.Server
	Addr      string

	opts   Options
	served chan error // Serve's result; nil while no proxy runs
}

// Options shape the proxy a test starts. The strings are YAML lines, indented
// as they stand in ztp.yaml and ending in a newline.
type Options struct {
	Policy string // Rego source of policies/test.rego; default DefaultPolicy
	Mode   string // policy.mode
	Limits string // YAML lines under limits:
	Audit  string // extra YAML lines under audit: (e.g. "  readers: [auditors]\n")
	Extra  string // extra top-level YAML (rate_limits:, budgets:, breakglass:, …)

	// ClientAuth is tls.client_auth (require or verify_if_given); default the
	// config's, require.
	ClientAuth string
	// Identity is extra YAML lines under identity:, before principals: (e.g.
	// "  jwt:\n    issuer: …\n").
	Identity string
	// Principals are rules appended to the ones every Env has: automation
	// under spiffe://example.org/ns/prod/sa/, humans under example.org/user/,
	// lead/ and auditor/.
	Principals string
	// AuditPath is audit.path, relative to Dir unless absolute; default audit.db.
	AuditPath string
	// Listen is the listen address in ztp.yaml, for the ztp-proxy binary run
	// on a Prepared Env; default 127.0.0.1:0. Start and Restart ignore it and
	// listen on a fresh loopback port themselves.
	Listen string
	// Upstream is the address of a backend the test runs itself; default a
	// Backend started for the Env.
	Upstream string

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

// configYAML is the ztp.yaml Prepare writes for o (with its defaults filled in).
func configYAML(o Options) string {
	clientAuth := ""
	if o.ClientAuth != "" {
		clientAuth = "  client_auth: " + o.ClientAuth + "\n"
	}
	desc := "    descriptors: test.protoset\n"
	if o.NoDescriptors {
		desc = ""
	}
	return fmt.Sprintf(`listen: %s
tls:
  cert: proxy.pem
  key: proxy-key.pem
  client_ca: ca.pem
%sidentity:
%s  principals:
%s%supstreams:
  - name: test
    address: %s
    services: ["grpc.testing.*"]
%s    tls: { insecure: true }
policy:
  paths: [policies/]
  mode: %s
audit:
  path: %s
%slimits:
%s%s`, o.Listen, clientAuth, o.Identity, principalRules, o.Principals, o.Upstream, desc, o.Mode, o.AuditPath, o.Audit, o.Limits, o.Extra)
}

// Start mints certificates, writes policy, protoset and config into t.TempDir(),
// starts the backend and the proxy, and stops both in t.Cleanup.
func Start(t testing.TB, o Options) *Env {
	t.Helper()
	e := Prepare(t, o)
	e.Restart(t)
	return e
}

// Prepare does what Start does except start the proxy: it writes a CA and the
// proxy's certificate, the policy, the protoset and ztp.yaml into
// t.TempDir() and starts the backend (unless o.Upstream is set). Restart then
// starts the proxy; tests of the ztp-proxy binary run it on e.Config instead.
func Prepare(t testing.TB, o Options) *Env {
	t.Helper()
	if o.Policy == "" {
		o.Policy = DefaultPolicy
	}
	if o.Mode == "" {
		o.Mode = "enforce"
	}
	if o.AuditPath == "" {
		o.AuditPath = "audit.db"
	}
	if o.Listen == "" {
		o.Listen = "127.0.0.1:0"
	}
	e := &Env{Dir: t.TempDir(), opts: o}
	if o.Upstream == "" {
		e.Backend = StartBackend(t)
		e.opts.Upstream = e.Backend.Addr
	}
	e.Config = filepath.Join(e.Dir, "ztp.yaml")
	e.AuditFile = o.AuditPath
	if !filepath.IsAbs(e.AuditFile) {
		e.AuditFile = filepath.Join(e.Dir, e.AuditFile)
	}
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
	if err := os.MkdirAll(filepath.Join(e.Dir, "policies"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "policies", "test.rego"), []byte(o.Policy), 0o644); err != nil {
		t.Fatal(err)
	}
	if !o.NoDescriptors {
		WriteProtoset(t, filepath.Join(e.Dir, "test.protoset"), testgrpc.File_grpc_testing_test_proto)
	}
	if err := os.WriteFile(e.Config, []byte(configYAML(e.opts)), 0o644); err != nil {
		t.Fatal(err)
	}
	// Registered after the backend's cleanup, so it runs before it: the proxy
	// drains while its upstream is still there.
	t.Cleanup(func() { e.Stop(t) })
	return e
}

// RewriteConfig replaces ztp.yaml by edit(its content), for tests of a reload
// (Server.Reload) or a restart with another configuration. It fails t when
// edit changes nothing: a replacement that did not match would otherwise test
// the old configuration unnoticed.
func (e *Env) RewriteConfig(t testing.TB, edit func(string) string) {
	t.Helper()
	b, err := os.ReadFile(e.Config)
	if err != nil {
		t.Fatal(err)
	}
	yaml := edit(string(b))
	if yaml == string(b) {
		t.Fatalf("RewriteConfig: the edit left %s unchanged", e.Config)
	}
	if err := os.WriteFile(e.Config, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
}

// NewServer builds a proxy from ztp.yaml as Restart would, without serving it:
// for tests of what stops a proxy from starting. The caller shuts a server it
// got down.
func (e *Env) NewServer(t testing.TB) (*proxy.Server, error) {
	t.Helper()
	cfg, err := config.Load(e.Config)
	if err != nil {
		b, _ := os.ReadFile(e.Config)
		t.Fatalf("config: %v\n%s", err, b)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	po := proxy.Options{Logger: log}
	if e.opts.Proxy != nil {
		e.opts.Proxy(&po)
	}
	return proxy.New(ctx, cfg, po)
}

// Restart stops the running proxy, if any, and starts a new one from the files
// in Dir: same certificates, policy and audit file, the config as it is on disk
// now, on a new Addr. Tests of what survives a restart use it; Start's first
// proxy is started by it too.
func (e *Env) Restart(t testing.TB) {
	t.Helper()
	e.Stop(t)
	srv, err := e.NewServer(t)
	if err != nil {
		t.Fatalf("proxy.New: %v", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		srv.Shutdown(context.Background())
		t.Fatal(err)
	}
	e.Server, e.Addr = srv, lis.Addr().String()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	e.served = served
}

// Stop drains the proxy and closes its audit file, so that a test can read the
// file or Restart; it does nothing when no proxy runs.
func (e *Env) Stop(t testing.TB) {
	t.Helper()
	if e.served == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Server.Shutdown(ctx)
	if err := <-e.served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	e.served = nil
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

// ClientTLS is the TLS config of a client that trusts the proxy and presents a
// certificate for id ("": none, for token-only or refused clients).
func (e *Env) ClientTLS(t testing.TB, id string) *tls.Config {
	t.Helper()
	tc := &tls.Config{RootCAs: e.CA.Pool(), ServerName: "localhost"}
	if id != "" {
		tc.Certificates = []tls.Certificate{e.Issue(t, id).TLS}
	}
	return tc
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

// Conn connects to the proxy with a certificate for id ("": none).
func (e *Env) Conn(t testing.TB, id string) *grpc.ClientConn {
	t.Helper()
	return e.ConnTLS(t, e.ClientTLS(t, id))
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

// Dial returns a TestService client authenticated as id ("": no certificate).
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

// SyncBuffer is an io.Writer a proxy's (or a subprocess's) goroutines may write
// while the test reads it, e.g. as a log sink.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// JWTIdentity is Options.Identity accepting bearer tokens of testjwt's issuer
// and audience signed by a key of jwksFile, with leeway (config syntax, e.g.
// "30s"; "" leaves the default). Token-only clients also need ClientAuth
// verify_if_given.
func JWTIdentity(jwksFile, leeway string) string {
	y := "  jwt:\n    issuer: " + testjwt.Issuer + "\n    audience: " + testjwt.Audience + "\n    jwks_file: " + jwksFile + "\n"
	if leeway != "" {
		y += "    leeway: " + leeway + "\n"
	}
	return y
}
