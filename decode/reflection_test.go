package decode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/reflection"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	rpbalpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/ztp-dev/ztp/internal/testclock"
)

// testService is the tiny upstream: it echoes the request payload.
type testService struct {
	grpc_testing.UnimplementedTestServiceServer
}

func (testService) UnaryCall(_ context.Context, req *grpc_testing.SimpleRequest) (*grpc_testing.SimpleResponse, error) {
	return &grpc_testing.SimpleResponse{Payload: req.GetPayload()}, nil
}

func (testService) EmptyCall(context.Context, *grpc_testing.Empty) (*grpc_testing.Empty, error) {
	return &grpc_testing.Empty{}, nil
}

type reflectionKind int

const (
	reflectV1AndAlpha  reflectionKind = iota // reflection.Register: what most servers run
	reflectV1AlphaOnly                       // older servers
	reflectNone                              // e.g. etcd
	reflectNoDeps                            // a server that never volunteers dependencies
)

// upstream is a real gRPC server on loopback that counts every stream by
// method, including ones to services it does not have.
type upstream struct {
	conn *grpc.ClientConn

	mu    sync.Mutex
	calls map[string]int
	// gate, when set, holds every reflection stream until closed; entered
	// receives a value as each one arrives.
	gate    chan struct{}
	entered chan struct{}
	// byFilename counts file_by_filename requests (reflectNoDeps only).
	byFilename int
}

func (u *upstream) count(method string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	if method == "" {
		n := 0
		for _, c := range u.calls {
			n += c
		}
		return n
	}
	return u.calls[method]
}

func startUpstream(t *testing.T, kind reflectionKind, gated bool, dialOpts ...grpc.DialOption) *upstream {
	t.Helper()
	u := &upstream{calls: make(map[string]int)}
	if gated {
		u.gate, u.entered = make(chan struct{}), make(chan struct{}, 64)
	}
	counting := func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		u.mu.Lock()
		u.calls[info.FullMethod]++
		u.mu.Unlock()
		if u.gate != nil && strings.HasSuffix(info.FullMethod, "/ServerReflectionInfo") {
			u.entered <- struct{}{}
			select {
			case <-u.gate:
			case <-ss.Context().Done():
				return ss.Context().Err()
			}
		}
		return handler(srv, ss)
	}
	s := grpc.NewServer(
		grpc.StreamInterceptor(counting),
		grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
			return status.Error(codes.Unimplemented, "unknown service")
		}),
	)
	grpc_testing.RegisterTestServiceServer(s, testService{})
	switch kind {
	case reflectV1AndAlpha:
		reflection.Register(s)
	case reflectV1AlphaOnly:
		rpbalpha.RegisterServerReflectionServer(s, reflection.NewServer(reflection.ServerOptions{Services: s}))
	case reflectNoDeps:
		rpb.RegisterServerReflectionServer(s, &noDepsReflection{u: u})
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		_ = s.Serve(lis)
	}()
	opts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, dialOpts...)
	conn, err := grpc.NewClient("passthrough:///"+lis.Addr().String(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	u.conn = conn
	t.Cleanup(func() {
		if u.gate != nil {
			select {
			case <-u.gate:
			default:
				close(u.gate)
			}
		}
		conn.Close()
		s.Stop()
		<-served
	})
	return u
}

// noDepsReflection answers from the compiled-in registry like a minimal
// third-party implementation: exactly the file asked for, never its
// imports, and it refuses to serve grpc/testing/empty.proto at all.
type noDepsReflection struct {
	rpb.UnimplementedServerReflectionServer
	u *upstream
}

func (n *noDepsReflection) ServerReflectionInfo(stream rpb.ServerReflection_ServerReflectionInfoServer) error {
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		var fd protoreflect.FileDescriptor
		switch r := req.GetMessageRequest().(type) {
		case *rpb.ServerReflectionRequest_FileContainingSymbol:
			if d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(r.FileContainingSymbol)); err == nil {
				fd = d.ParentFile()
			}
		case *rpb.ServerReflectionRequest_FileByFilename:
			n.u.mu.Lock()
			n.u.byFilename++
			n.u.mu.Unlock()
			if r.FileByFilename != "grpc/testing/empty.proto" {
				fd, _ = protoregistry.GlobalFiles.FindFileByPath(r.FileByFilename)
			}
		}
		resp := &rpb.ServerReflectionResponse{OriginalRequest: req}
		if fd == nil {
			resp.MessageResponse = &rpb.ServerReflectionResponse_ErrorResponse{
				ErrorResponse: &rpb.ErrorResponse{ErrorCode: int32(codes.NotFound), ErrorMessage: "not found"},
			}
		} else {
			b, err := proto.Marshal(protodesc.ToFileDescriptorProto(fd))
			if err != nil {
				return err
			}
			resp.MessageResponse = &rpb.ServerReflectionResponse_FileDescriptorResponse{
				FileDescriptorResponse: &rpb.FileDescriptorResponse{FileDescriptorProto: [][]byte{b}},
			}
		}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

const (
	reflV1    = "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
	reflAlpha = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"
)

func TestReflectionDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind reflectionKind
	}{
		{"reflection v1 and v1alpha", reflectV1AndAlpha},
		{"reflection v1alpha only", reflectV1AlphaOnly},
		{"server that sends no dependencies", reflectNoDeps},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := startUpstream(t, tc.kind, false)
			ctx := testContext(t)
			d := NewDecoder(NewReflection(u.conn, ReflectionOptions{}))

			// The upstream is real: the call the proxy would forward works.
			if _, err := grpc_testing.NewTestServiceClient(u.conn).EmptyCall(ctx, &grpc_testing.Empty{}); err != nil {
				t.Fatalf("EmptyCall on the upstream: %v", err)
			}

			methods := []struct {
				method string
				msg    proto.Message
				info   MethodInfo
			}{
				{"/grpc.testing.TestService/UnaryCall", &grpc_testing.SimpleRequest{
					ResponseType: grpc_testing.PayloadType_COMPRESSABLE, ResponseSize: 7,
					Payload: &grpc_testing.Payload{Body: []byte("key")}, FillUsername: true,
				}, MethodInfo{Known: true}},
				{"/grpc.testing.TestService/EmptyCall", &grpc_testing.Empty{}, MethodInfo{Known: true}},
				{"/grpc.testing.TestService/StreamingOutputCall", &grpc_testing.StreamingOutputCallRequest{
					ResponseParameters: []*grpc_testing.ResponseParameters{{Size: 1, IntervalUs: 2}},
				}, MethodInfo{Known: true, ServerStreaming: true}},
				{"/grpc.testing.TestService/StreamingInputCall", &grpc_testing.StreamingInputCallRequest{
					Payload: &grpc_testing.Payload{Body: []byte{0}},
				}, MethodInfo{Known: true, ClientStreaming: true}},
				{"/grpc.testing.TestService/FullDuplexCall", &grpc_testing.StreamingOutputCallRequest{
					ResponseStatus: &grpc_testing.EchoStatus{Code: 3, Message: "x"},
				}, MethodInfo{Known: true, ClientStreaming: true, ServerStreaming: true}},
			}
			for range 3 {
				for _, m := range methods {
					req, info, ok := d.Decode(ctx, m.method, wire(t, m.msg))
					if !ok || info != m.info {
						t.Fatalf("Decode(%s) = %v, %+v, %v; want ok with %+v", m.method, req, info, ok, m.info)
					}
					want, err := ToMap(m.msg.ProtoReflect())
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprint(req) != fmt.Sprint(want) {
						t.Errorf("Decode(%s) = %v, want %v", m.method, req, want)
					}
				}
			}
			// Fifteen decodes of five methods of one service: one stream.
			if got := u.count(reflV1) + u.count(reflAlpha); got != 1+btoi(tc.kind == reflectV1AlphaOnly) {
				t.Errorf("reflection streams = %d (v1 %d, v1alpha %d), want one fetch", got, u.count(reflV1), u.count(reflAlpha))
			}
			if tc.kind == reflectNoDeps {
				u.mu.Lock()
				byName := u.byFilename
				u.mu.Unlock()
				if byName < 2 {
					t.Errorf("file_by_filename requests = %d, want the imports of test.proto fetched by name", byName)
				}
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// TestReflectionV1AlphaRemembered: after one UNIMPLEMENTED from v1, later
// fetches go straight to v1alpha.
func TestReflectionV1AlphaRemembered(t *testing.T) {
	u := startUpstream(t, reflectV1AlphaOnly, false)
	ctx := testContext(t)
	r := NewReflection(u.conn, ReflectionOptions{})
	if _, err := r.FindMethod(ctx, "/grpc.testing.TestService/UnaryCall"); err != nil {
		t.Fatalf("FindMethod: %v", err)
	}
	if _, err := r.FindMethod(ctx, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"); err != nil {
		t.Fatalf("FindMethod of a second service: %v", err)
	}
	if v1, alpha := u.count(reflV1), u.count(reflAlpha); v1 != 1 || alpha != 2 {
		t.Errorf("streams v1=%d v1alpha=%d, want v1=1 (tried once) v1alpha=2 (two services)", v1, alpha)
	}
}

func TestReflectionSharesOneFetch(t *testing.T) {
	u := startUpstream(t, reflectV1AndAlpha, true)
	ctx := testContext(t)
	d := NewDecoder(NewReflection(u.conn, ReflectionOptions{}))
	in := wire(t, &grpc_testing.SimpleRequest{ResponseSize: 1})

	const n = 32
	results := make(chan bool, n)
	var started sync.WaitGroup
	for range n {
		started.Add(1)
		go func() {
			started.Done()
			_, _, ok := d.Decode(ctx, "/grpc.testing.TestService/UnaryCall", in)
			results <- ok
		}()
	}
	started.Wait()
	<-u.entered // the first fetch is at the upstream, held there
	close(u.gate)
	for range n {
		if !<-results {
			t.Fatal("a concurrent Decode failed")
		}
	}
	if got := u.count(reflV1); got != 1 {
		t.Errorf("%d concurrent lookups made %d reflection streams, want 1", n, got)
	}
}

// TestReflectionCallerGivesUp: a caller's deadline ends its own wait, not
// the fetch that others (and later callers) use.
func TestReflectionCallerGivesUp(t *testing.T) {
	u := startUpstream(t, reflectV1AndAlpha, true)
	r := NewReflection(u.conn, ReflectionOptions{})
	short, cancel := context.WithCancel(testContext(t))
	errc := make(chan error, 1)
	go func() {
		_, err := r.FindMethod(short, "/grpc.testing.TestService/UnaryCall")
		errc <- err
	}()
	<-u.entered
	cancel()
	err := <-errc
	if !errors.Is(err, ErrReflection) || !errors.Is(err, context.Canceled) {
		t.Fatalf("FindMethod with a cancelled context = %v, want ErrReflection wrapping context.Canceled", err)
	}
	close(u.gate)
	if _, err := r.FindMethod(testContext(t), "/grpc.testing.TestService/UnaryCall"); err != nil {
		t.Fatalf("FindMethod after the fetch finished: %v", err)
	}
	if got := u.count(reflV1); got != 1 {
		t.Errorf("reflection streams = %d, want 1 (the abandoned fetch completed and was cached)", got)
	}
}

func TestReflectionNegativeCache(t *testing.T) {
	u := startUpstream(t, reflectV1AndAlpha, false)
	ctx := testContext(t)
	clock := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	r := NewReflection(u.conn, ReflectionOptions{NegativeTTL: 10 * time.Second, Now: clock.Now})
	d := NewDecoder(r)

	type step struct {
		name      string
		advance   time.Duration
		method    string
		wantErr   error
		wantCalls int // reflection streams so far
	}
	steps := []step{
		{"unknown service fetched once", 0, "/nope.Service/Call", ErrUnknownService, 1},
		{"unknown service cached", 0, "/nope.Service/Call", ErrUnknownService, 1},
		{"unknown service still cached just before TTL", 9 * time.Second, "/nope.Service/Call", ErrUnknownService, 1},
		{"unknown service asked again after TTL", 2 * time.Second, "/nope.Service/Call", ErrUnknownService, 2},
		{"known service fetched", 0, "/grpc.testing.TestService/UnaryCall", nil, 3},
		{"unknown method of a fresh service costs nothing", 0, "/grpc.testing.TestService/Nope", ErrUnknownMethod, 3},
		{"unknown method cached", 5 * time.Second, "/grpc.testing.TestService/Nope", ErrUnknownMethod, 3},
		{"unknown method refreshes the service once after TTL", 6 * time.Second, "/grpc.testing.TestService/Nope", ErrUnknownMethod, 4},
		{"refresh restarted the clock", 0, "/grpc.testing.TestService/Nope", ErrUnknownMethod, 4},
		{"known method never refetched", time.Hour, "/grpc.testing.TestService/UnaryCall", nil, 4},
		{"malformed name never reaches the upstream", 0, "/grpc.testing.TestService", ErrBadMethodName, 4},
	}
	for _, s := range steps {
		clock.Advance(s.advance)
		_, err := r.FindMethod(ctx, s.method)
		if !errors.Is(err, s.wantErr) {
			t.Fatalf("%s: FindMethod(%s) error = %v, want %v", s.name, s.method, err, s.wantErr)
		}
		_, info, ok := d.Decode(ctx, s.method, nil)
		if ok != (s.wantErr == nil) || info.Known != (s.wantErr == nil) {
			t.Fatalf("%s: Decode(%s) ok=%v info=%+v, want ok=%v", s.name, s.method, ok, info, s.wantErr == nil)
		}
		if got := u.count(reflV1); got != s.wantCalls {
			t.Fatalf("%s: reflection streams = %d, want %d", s.name, got, s.wantCalls)
		}
	}
}

func TestReflectionNotServed(t *testing.T) {
	u := startUpstream(t, reflectNone, false)
	ctx := testContext(t)
	r := NewReflection(u.conn, ReflectionOptions{})
	d := NewDecoder(r)
	const method = "/grpc.testing.TestService/UnaryCall"

	_, err := r.FindMethod(ctx, method)
	if !errors.Is(err, ErrNoReflection) {
		t.Fatalf("FindMethod(%s) error = %v, want ErrNoReflection", method, err)
	}
	if !strings.Contains(err.Error(), "does not serve gRPC reflection") || !strings.Contains(err.Error(), "grpc.testing.TestService") {
		t.Errorf("FindMethod error %q should say reflection is not served and for which service", err)
	}
	for range 5 {
		req, info, ok := d.Decode(ctx, method, wire(t, &grpc_testing.SimpleRequest{}))
		if ok || req != nil || info.Known {
			t.Fatalf("Decode(%s) = %v, %+v, %v; want nil, unknown, false", method, req, info, ok)
		}
		if info := d.Info(ctx, method); info.Known {
			t.Fatalf("Info(%s) = %+v, want unknown", method, info)
		}
	}
	if v1, alpha := u.count(reflV1), u.count(reflAlpha); v1 != 1 || alpha != 1 {
		t.Errorf("streams v1=%d v1alpha=%d, want one attempt each, then the failure cached", v1, alpha)
	}
}

func TestReflectionUpstreamDown(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close() // nothing listens there now
	conn, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := NewReflection(conn, ReflectionOptions{FetchTimeout: 5 * time.Second})
	_, err = r.FindMethod(testContext(t), "/grpc.testing.TestService/UnaryCall")
	if !errors.Is(err, ErrReflection) || status.Code(err) != codes.Unavailable {
		t.Fatalf("FindMethod against a dead upstream = %v, want ErrReflection with the transport status", err)
	}
	if _, _, ok := NewDecoder(r).Decode(testContext(t), "/grpc.testing.TestService/UnaryCall", nil); ok {
		t.Fatal("Decode against a dead upstream succeeded")
	}
}

// rawCodec is what a transparent forwarder typically installs as the
// upstream connection's default codec: it moves bytes and nothing else.
type rawCodec struct{}

func (rawCodec) Name() string { return "proto" }

func (rawCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*[]byte)
	if !ok {
		return nil, fmt.Errorf("raw codec cannot marshal %T", v)
	}
	return mem.BufferSlice{mem.SliceBuffer(*b)}, nil
}

func (rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("raw codec cannot unmarshal into %T", v)
	}
	*b = data.Materialize()
	return nil
}

func TestReflectionOnRawCodecConnection(t *testing.T) {
	u := startUpstream(t, reflectV1AndAlpha, false, grpc.WithDefaultCallOptions(grpc.ForceCodecV2(rawCodec{})))
	if _, err := NewReflection(u.conn, ReflectionOptions{}).FindMethod(testContext(t), "/grpc.testing.TestService/UnaryCall"); err != nil {
		t.Fatalf("FindMethod over a connection whose default codec is raw bytes: %v", err)
	}
}

// TestReflectionCacheBounded: clients choose method names, so failures for
// made-up services must not grow the cache without limit.
func TestReflectionCacheBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("makes over a thousand reflection calls")
	}
	u := startUpstream(t, reflectV1AndAlpha, false)
	ctx := testContext(t)
	r := NewReflection(u.conn, ReflectionOptions{})
	for i := range maxEntries + 100 {
		if _, err := r.FindMethod(ctx, fmt.Sprintf("/made.up%d.Service/Call", i)); !errors.Is(err, ErrUnknownService) {
			t.Fatalf("FindMethod of made-up service %d: %v, want ErrUnknownService", i, err)
		}
	}
	r.mu.Lock()
	n := len(r.services)
	r.mu.Unlock()
	if n > maxEntries {
		t.Errorf("cache holds %d services after %d made-up names, want at most %d", n, maxEntries+100, maxEntries)
	}
}
