package proxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestUnaryAllowedIsForwardedAndAudited(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	c := e.Dial(t, proxytest.DeployerID)
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t),
		"x-ztp-principal", "spiffe://example.org/user/root", // forged: must not survive
		"x-ztp-justification", "rotate key",
		"x-ztp-ticket", "INC-1",
		"authorization", "Bearer secret-for-the-proxy",
		"x-request-id", "r-1",
	)
	var header, trailer metadata.MD
	resp, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hello")}},
		grpc.Header(&header), grpc.Trailer(&trailer))
	if err != nil {
		t.Fatalf("UnaryCall: %v", err)
	}
	if string(resp.GetPayload().GetBody()) != "hello" || resp.GetUsername() != "backend" {
		t.Errorf("UnaryCall response = %v, want the backend's echo", resp)
	}
	if got := header.Get("x-backend-header"); len(got) != 1 || got[0] != "h1" {
		t.Errorf("response header x-backend-header = %v, want [h1]", got)
	}
	if got := trailer.Get("x-backend-trailer"); len(got) != 1 || got[0] != "t1" {
		t.Errorf("trailer x-backend-trailer = %v, want [t1]", got)
	}

	md := e.Backend.MD()
	if got := md.Get(proxy.HeaderPrincipal); len(got) != 1 || got[0] != proxytest.DeployerID {
		t.Errorf("backend saw %s = %v, want [%s]", proxy.HeaderPrincipal, got, proxytest.DeployerID)
	}
	for _, k := range []string{"authorization", "x-ztp-justification", "x-ztp-ticket"} {
		if got := md.Get(k); len(got) != 0 {
			t.Errorf("backend saw %s = %v, want it stripped", k, got)
		}
	}
	if got := md.Get("x-request-id"); len(got) != 1 || got[0] != "r-1" {
		t.Errorf("backend saw x-request-id = %v, want [r-1]", got)
	}

	recs := e.Records(t)
	var req, out = findType(recs, "request"), findType(recs, "outcome")
	if req == nil || out == nil {
		t.Fatalf("audit records = %v, want a request and an outcome record", recs)
	}
	if req.Principal == nil || req.Principal.ID != proxytest.DeployerID || req.Principal.Kind != "automation" {
		t.Errorf("request record principal = %+v, want %s automation", req.Principal, proxytest.DeployerID)
	}
	if req.Decision != "allow" || req.Method != "/grpc.testing.TestService/UnaryCall" || req.Upstream != "test" {
		t.Errorf("request record = decision %q method %q upstream %q", req.Decision, req.Method, req.Upstream)
	}
	if req.Justification != "rotate key" || req.Ticket != "INC-1" {
		t.Errorf("request record justification/ticket = %q/%q", req.Justification, req.Ticket)
	}
	var decoded map[string]any
	if err := json.Unmarshal(req.Request, &decoded); err != nil || decoded["payload"].(map[string]any)["body"] != "aGVsbG8=" {
		t.Errorf("request record request = %s (%v), want payload.body aGVsbG8=", req.Request, err)
	}
	if _, leaked := req.Metadata["authorization"]; leaked {
		t.Errorf("audit record metadata holds authorization: %v", req.Metadata)
	}
	if !strings.HasPrefix(req.PolicyVersion, "sha256:") {
		t.Errorf("policy_version = %q, want sha256:…", req.PolicyVersion)
	}
	if out.Ref != req.Seq || out.Code != "OK" {
		t.Errorf("outcome record ref %d code %q, want ref %d code OK", out.Ref, out.Code, req.Seq)
	}
}

func findType(recs []*audit.Record, typ string) *audit.Record {
	for _, r := range recs {
		if r.Type == typ {
			return r
		}
	}
	return nil
}

func TestDeniedNeverReachesBackend(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	c := e.Dial(t, proxytest.AliceID)
	_, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{})
	proxytest.WantCode(t, "UnaryCall as human", err, codes.PermissionDenied, "ztp: denied: not allowed by policy")

	stream, err := c.StreamingInputCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	stream.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}})
	_, err = stream.CloseAndRecv()
	proxytest.WantCode(t, "StreamingInputCall as human", err, codes.PermissionDenied, "ztp: denied: humans may not upload")

	_, err = e.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("forbidden")}})
	proxytest.WantCode(t, "UnaryCall with forbidden payload", err, codes.PermissionDenied, "payload 'forbidden' is never allowed")

	if n := e.Backend.Calls.Load(); n != 0 {
		t.Errorf("backend handled %d calls, want 0", n)
	}
	recs := e.Requests(t, "/grpc.testing.TestService/UnaryCall")
	if len(recs) != 2 || recs[0].Decision != "deny" || recs[1].Decision != "deny" {
		t.Fatalf("UnaryCall request records = %+v, want two denials", recs)
	}
}

func TestAllRPCKinds(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	c := e.Dial(t, proxytest.DeployerID)

	t.Run("server streaming", func(t *testing.T) {
		s, err := c.StreamingOutputCall(proxytest.Ctx(t), &testgrpc.StreamingOutputCallRequest{
			ResponseParameters: []*testgrpc.ResponseParameters{{Size: 1}, {Size: 2}, {Size: 3}},
		})
		if err != nil {
			t.Fatal(err)
		}
		var sizes []int
		for {
			m, err := s.Recv()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("Recv: %v", err)
			}
			sizes = append(sizes, len(m.GetPayload().GetBody()))
		}
		if len(sizes) != 3 || sizes[2] != 3 {
			t.Errorf("received sizes %v, want [1 2 3]", sizes)
		}
	})

	t.Run("client streaming", func(t *testing.T) {
		s, err := c.StreamingInputCall(proxytest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{"ab", "cde", "f"} {
			if err := s.Send(&testgrpc.StreamingInputCallRequest{Payload: &testgrpc.Payload{Body: []byte(b)}}); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		resp, err := s.CloseAndRecv()
		if err != nil || resp.GetAggregatedPayloadSize() != 6 {
			t.Fatalf("CloseAndRecv = %v, %v; want size 6", resp, err)
		}
		recs := e.Requests(t, "/grpc.testing.TestService/StreamingInputCall")
		if len(recs) != 3 {
			t.Fatalf("got %d request records, want one per message (3)", len(recs))
		}
		for i, r := range recs {
			if r.MessageIndex != i || r.Decision != "allow" {
				t.Errorf("record %d: message_index %d decision %q", i, r.MessageIndex, r.Decision)
			}
		}
	})

	t.Run("bidi", func(t *testing.T) {
		s, err := c.FullDuplexCall(proxytest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		for _, b := range []string{"one", "two"} {
			if err := s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte(b)}}); err != nil {
				t.Fatal(err)
			}
			m, err := s.Recv()
			if err != nil || string(m.GetPayload().GetBody()) != b {
				t.Fatalf("Recv = %v, %v; want echo %q", m, err, b)
			}
		}
		s.CloseSend()
		if _, err := s.Recv(); err != io.EOF {
			t.Fatalf("Recv after CloseSend = %v, want EOF", err)
		}
	})

	t.Run("bidi later message denied", func(t *testing.T) {
		before := e.Backend.Messages.Load()
		s, err := c.FullDuplexCall(proxytest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("fine")}})
		if _, err := s.Recv(); err != nil {
			t.Fatalf("first Recv: %v", err)
		}
		s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("forbidden")}})
		_, err = s.Recv()
		proxytest.WantCode(t, "Recv after forbidden message", err, codes.PermissionDenied, "never allowed")
		if got := e.Backend.Messages.Load() - before; got != 1 {
			t.Errorf("backend received %d messages of the call, want 1", got)
		}
	})

	t.Run("upstream status passes through", func(t *testing.T) {
		var trailer metadata.MD
		_, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{ResponseStatus: &testgrpc.EchoStatus{Code: int32(codes.FailedPrecondition), Message: "backend says no"}}, grpc.Trailer(&trailer))
		proxytest.WantCode(t, "UnaryCall with echo status", err, codes.FailedPrecondition, "backend says no")
		if got := trailer.Get("x-backend-trailer"); len(got) != 1 {
			t.Errorf("trailer on error = %v, want x-backend-trailer", trailer)
		}
		var out *audit.Record
		for _, r := range e.Records(t) {
			if r.Type == "outcome" && r.Method == "/grpc.testing.TestService/UnaryCall" {
				out = r
			}
		}
		if out == nil || out.Code != "FAILED_PRECONDITION" {
			t.Errorf("outcome record = %+v, want code FAILED_PRECONDITION", out)
		}
	})
}

// TestPolicyInputDocument: the policy sees the input document of the README's policy contract
// ("Policy contract"), field by field, on the first and a later message.
func TestPolicyInputDocument(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Policy: `package ztp

default allow := false

deny contains json.marshal(input)
`})
	c := e.Dial(t, proxytest.DeployerID)
	ctx := metadata.AppendToOutgoingContext(proxytest.Ctx(t),
		"x-ztp-justification", "rotate key",
		"x-ztp-ticket", "INC-1",
		"authorization", "Bearer secret",
		"x-request-id", "r-1",
	)
	_, err := c.UnaryCall(ctx, &testgrpc.SimpleRequest{ResponseSize: 7, Payload: &testgrpc.Payload{Body: []byte("hi")}})
	proxytest.WantCode(t, "UnaryCall", err, codes.PermissionDenied, "")
	_, err = c.EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "EmptyCall", err, codes.PermissionDenied, "")

	var inputs []map[string]any
	for _, r := range e.Records(t) {
		if r.Type != "request" || len(r.Reasons) == 0 {
			continue
		}
		for _, reason := range r.Reasons {
			var in map[string]any
			if json.Unmarshal([]byte(reason), &in) == nil {
				inputs = append(inputs, in)
			}
		}
	}
	if len(inputs) != 2 {
		t.Fatalf("inputs seen by the policy = %d, want 2", len(inputs))
	}
	unary, empty := inputs[0], inputs[1]
	ts, _ := unary["time"].(string)
	if _, err := time.Parse(time.RFC3339, ts); err != nil {
		t.Errorf("input.time = %q, want RFC 3339", ts)
	}
	delete(unary, "time")
	want := map[string]any{
		"principal": map[string]any{"id": proxytest.DeployerID, "kind": "automation", "groups": []any{"deployers"}, "authn": "mtls"},
		"method":    "/grpc.testing.TestService/UnaryCall",
		"service":   "grpc.testing.TestService",
		"rpc":       "UnaryCall",
		"upstream":  "test",
		// Fields left at their zero value are there, as the upstream reads them.
		"request": map[string]any{"responseSize": float64(7), "payload": map[string]any{"body": "aGk=", "type": "COMPRESSABLE"},
			"responseType": "COMPRESSABLE", "fillUsername": false, "fillOauthScope": false, "fillServerId": false, "fillGrpclbRouteType": false},
		"request_decoded":          true,
		"request_undecoded_reason": "",
		"request_unknown_fields":   []any{},
		"stream":                   map[string]any{"client_streaming": false, "server_streaming": false, "message_index": float64(0)},
		"justification":            "rotate key",
		"ticket":                   "INC-1",
		"breakglass":               map[string]any{"active": false},
	}
	md, _ := unary["metadata"].(map[string]any)
	delete(unary, "metadata")
	if !reflect.DeepEqual(unary, want) {
		t.Errorf("input =\n%v\nwant\n%v", unary, want)
	}
	if got := md["x-request-id"]; !reflect.DeepEqual(got, []any{"r-1"}) {
		t.Errorf("input.metadata[x-request-id] = %v, want [r-1]", got)
	}
	for _, k := range []string{"authorization", "x-ztp-justification", "x-ztp-ticket"} {
		if _, ok := md[k]; ok {
			t.Errorf("input.metadata has %s", k)
		}
	}
	if r, ok := empty["request"].(map[string]any); !ok || len(r) != 0 || empty["rpc"] != "EmptyCall" {
		t.Errorf("EmptyCall input: request %v rpc %v, want {} and EmptyCall", empty["request"], empty["rpc"])
	}
}

// TestUnaryLateHalfClose: a client that sends its one message and half-closes
// only later (gRPC clients do both at once) still gets the backend's answer,
// and a second message on a unary method is refused without a decision.
func TestUnaryLateHalfClose(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	conn := e.Conn(t, proxytest.DeployerID)
	desc := &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}

	cs, err := conn.NewStream(proxytest.Ctx(t), desc, "/grpc.testing.TestService/UnaryCall")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(&testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("late")}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // the message is decided and forwarded; no half-close yet
	if err := cs.CloseSend(); err != nil {
		t.Fatal(err)
	}
	var resp testgrpc.SimpleResponse
	if err := cs.RecvMsg(&resp); err != nil || string(resp.GetPayload().GetBody()) != "late" {
		t.Fatalf("RecvMsg = %v, %v; want the echo of the late half-closed call", &resp, err)
	}

	// Two messages on a unary method: the first is decided and forwarded, the
	// second refused by the proxy without a decision.
	cs, err = conn.NewStream(proxytest.Ctx(t), desc, "/grpc.testing.TestService/UnaryCall")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := cs.SendMsg(&testgrpc.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	cs.CloseSend()
	var rerr error
	for rerr == nil {
		rerr = cs.RecvMsg(&resp)
	}
	if status.Code(rerr) == codes.OK || errors.Is(rerr, io.EOF) {
		t.Errorf("two messages on a unary method: %v, want an error", rerr)
	}
	n := 0
	for _, r := range e.Records(t) {
		if r.Type == "request" && r.Method == "/grpc.testing.TestService/UnaryCall" && r.Decision == "allow" {
			n++
		}
	}
	if n != 2 {
		t.Errorf("allowed UnaryCall messages audited = %d, want 2 (one per call)", n)
	}
}

// TestUnknownFieldsVisibleToPolicy: fields the descriptor set does not know
// are left out of input.request (as protojson does) but listed in
// input.request_unknown_fields, so a policy can refuse what it cannot see.
func TestUnknownFieldsVisibleToPolicy(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Policy: `package ztp

default allow := true

deny contains sprintf("unknown fields %v", [input.request_unknown_fields]) if count(input.request_unknown_fields) > 0
`})
	conn := e.Conn(t, proxytest.DeployerID)
	// A SimpleResponse sent as UnaryCall's request: its username (field 2,
	// a string) has the wrong wire type for SimpleRequest.response_size, so
	// the proxy's decoder keeps it as an unknown field, as the backend does.
	err := conn.Invoke(proxytest.Ctx(t), "/grpc.testing.TestService/UnaryCall", &testgrpc.SimpleResponse{Username: "x"}, &testgrpc.SimpleResponse{})
	proxytest.WantCode(t, "UnaryCall with an unknown field", err, codes.PermissionDenied, `unknown fields ["2"]`)
	if _, err := e.Dial(t, proxytest.DeployerID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{ResponseSize: 1}); err != nil {
		t.Errorf("UnaryCall without unknown fields: %v", err)
	}
	if n := e.Backend.Calls.Load(); n != 1 {
		t.Errorf("backend calls = %d, want 1", n)
	}
}

// TestUnaryDeadlineWithoutHalfClose: limits.max_unary_deadline ends a unary
// call whose client sends its message but never half-closes.
func TestUnaryDeadlineWithoutHalfClose(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Limits: "  max_unary_deadline: 300ms\n"})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := e.Conn(t, proxytest.DeployerID).NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/grpc.testing.TestService/UnaryCall")
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.SendMsg(&testgrpc.SimpleRequest{}); err != nil {
		t.Fatal(err)
	}
	var resp testgrpc.SimpleResponse
	done := make(chan error, 1)
	go func() { done <- cs.RecvMsg(&resp) }()
	select {
	case err := <-done:
		proxytest.WantCode(t, "unary call without half-close", err, codes.DeadlineExceeded, "")
	case <-time.After(10 * time.Second): // the client's own deadline is 30s
		t.Fatal("max_unary_deadline (300ms) did not end the call within 10s")
	}
}
