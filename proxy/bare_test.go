package proxy_test

import (
	"errors"
	"io"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// startBare serves a bare forwarder in front of b on loopback and returns a
// client of it.
func startBare(t *testing.T, b *proxytest.Backend) testgrpc.TestServiceClient {
	t.Helper()
	up, err := grpc.NewClient(b.Addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	srv := proxy.NewBareForwarder(up)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
		up.Close()
	})
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return testgrpc.NewTestServiceClient(conn)
}

// TestBareForwarderIsTransparent checks that the forwarder the benchmark
// measures really forwards: bodies, headers, trailers and the upstream's
// status reach the client, and what the proxy owns is stripped.
func TestBareForwarderIsTransparent(t *testing.T) {
	b := proxytest.StartBackend(t)
	c := startBare(t, b)

	tests := []struct {
		name     string
		req      *testgrpc.SimpleRequest
		wantCode codes.Code
		wantBody string
	}{
		{name: "echo", req: &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hello")}}, wantCode: codes.OK, wantBody: "hello"},
		{name: "empty payload", req: &testgrpc.SimpleRequest{}, wantCode: codes.OK},
		{name: "upstream status passes through", req: &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "nope"}}, wantCode: codes.FailedPrecondition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t),
				"authorization", "Bearer for-the-proxy",
				"x-ztp-principal", "spiffe://forged",
				"x-request-id", "r-1")
			var header, trailer metadata.MD
			resp, err := c.UnaryCall(ctx, tc.req, grpc.Header(&header), grpc.Trailer(&trailer))
			if got := status.Code(err); got != tc.wantCode {
				t.Fatalf("UnaryCall code = %v (%v), want %v", got, err, tc.wantCode)
			}
			if got := string(resp.GetPayload().GetBody()); got != tc.wantBody {
				t.Errorf("UnaryCall body = %q, want %q", got, tc.wantBody)
			}
			if got := header.Get("x-backend-header"); len(got) != 1 || got[0] != "h1" {
				t.Errorf("header x-backend-header = %v, want [h1]", got)
			}
			if got := trailer.Get("x-backend-trailer"); len(got) != 1 || got[0] != "t1" {
				t.Errorf("trailer x-backend-trailer = %v, want [t1]", got)
			}
			md := b.MD()
			for _, k := range []string{"authorization", proxy.HeaderPrincipal} {
				if got := md.Get(k); len(got) != 0 {
					t.Errorf("backend saw %s = %v, want it stripped", k, got)
				}
			}
			if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "r-1" {
				t.Errorf("backend saw x-request-id = %v, want [r-1]", got)
			}
		})
	}
}

func TestBareForwarderStreams(t *testing.T) {
	b := proxytest.StartBackend(t)
	c := startBare(t, b)
	ctx := proxytest.Ctx(t)

	stream, err := c.FullDuplexCall(ctx)
	if err != nil {
		t.Fatalf("FullDuplexCall: %v", err)
	}
	for _, body := range []string{"one", "two", "three"} {
		if err := stream.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(body)}}); err != nil {
			t.Fatalf("Send(%q): %v", body, err)
		}
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("Recv after %q: %v", body, err)
		}
		if got := string(resp.GetPayload().GetBody()); got != body {
			t.Errorf("Recv = %q, want %q", got, body)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatalf("CloseSend: %v", err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("Recv after CloseSend = %v, want io.EOF (the upstream's OK)", err)
	}
	if got := b.Messages.Load(); got != 3 {
		t.Errorf("backend received %d messages, want 3", got)
	}
}
