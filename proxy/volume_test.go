package proxy_test

import (
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	ztpv1 "github.com/ztp-dev/ztp/api/ztp/v1"
	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

// outcomes returns the outcome records of method's calls, in order.
func outcomes(t *testing.T, env *proxytest.Env, method string) []*audit.Record {
	t.Helper()
	var out []*audit.Record
	for _, r := range env.Records(t) {
		if r.Type == audit.TypeOutcome && r.Method == method {
			out = append(out, r)
		}
	}
	return out
}

// streamOut asks the backend for one response of each body size and reads
// them all; it returns the responses received and the call's final error.
func streamOut(t *testing.T, c testgrpc.TestServiceClient, sizes ...int32) ([]*testgrpc.StreamingOutputCallResponse, metadata.MD, error) {
	t.Helper()
	req := &testgrpc.StreamingOutputCallRequest{}
	for _, n := range sizes {
		req.ResponseParameters = append(req.ResponseParameters, &testgrpc.ResponseParameters{Size: n})
	}
	st, err := c.StreamingOutputCall(proxytest.Ctx(t), req)
	if err != nil {
		t.Fatal(err)
	}
	var got []*testgrpc.StreamingOutputCallResponse
	for {
		m, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return got, st.Trailer(), err
		}
		got = append(got, m)
	}
}

func outBody(n int) *testgrpc.StreamingOutputCallResponse {
	return &testgrpc.StreamingOutputCallResponse{Payload: &testgrpc.Payload{Body: make([]byte, n)}}
}

func wantVolume(t *testing.T, what string, r *audit.Record, msgsIn, bytesIn, msgsOut, bytesOut int) {
	t.Helper()
	if r.MessagesIn != uint64(msgsIn) || r.BytesIn != uint64(bytesIn) || r.MessagesOut != uint64(msgsOut) || r.BytesOut != uint64(bytesOut) {
		t.Errorf("%s outcome: messages_in %d bytes_in %d messages_out %d bytes_out %d; want %d %d %d %d",
			what, r.MessagesIn, r.BytesIn, r.MessagesOut, r.BytesOut, msgsIn, bytesIn, msgsOut, bytesOut)
	}
}

// TestOutcomeResponseVolume: outcome records carry the message bytes each way
// (the protobuf sizes of the messages, as on the wire) for unary,
// server-streaming and bidi calls, with no response-volume rule configured.
func TestOutcomeResponseVolume(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{})
	c := env.Dial(t, proxytest.DeployerID)

	ureq := &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hello, volume")}}
	uresp, err := c.UnaryCall(proxytest.Ctx(t), ureq)
	if err != nil {
		t.Fatal(err)
	}

	got, _, err := streamOut(t, c, 10, 2000, 70000)
	if err != nil || len(got) != 3 {
		t.Fatalf("StreamingOutputCall: %d messages, %v", len(got), err)
	}
	sreq := &testgrpc.StreamingOutputCallRequest{ResponseParameters: []*testgrpc.ResponseParameters{{Size: 10}, {Size: 2000}, {Size: 70000}}}

	bidi, err := c.FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	breqs := []*testgrpc.StreamingOutputCallRequest{
		{Payload: &testgrpc.Payload{Body: []byte("one")}},
		{Payload: &testgrpc.Payload{Body: make([]byte, 300)}},
	}
	bidiIn, bidiOut := 0, 0
	for _, r := range breqs {
		if err := bidi.Send(r); err != nil {
			t.Fatal(err)
		}
		m, err := bidi.Recv()
		if err != nil {
			t.Fatal(err)
		}
		bidiIn += proto.Size(r)
		bidiOut += proto.Size(m)
	}
	if err := bidi.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("bidi end: %v", err)
	}

	wantVolume(t, "unary", one(t, outcomes(t, env, "/grpc.testing.TestService/UnaryCall")), 1, proto.Size(ureq), 1, proto.Size(uresp))
	wantVolume(t, "server-streaming", one(t, outcomes(t, env, "/grpc.testing.TestService/StreamingOutputCall")),
		1, proto.Size(sreq), 3, proto.Size(outBody(10))+proto.Size(outBody(2000))+proto.Size(outBody(70000)))
	wantVolume(t, "bidi", one(t, outcomes(t, env, "/grpc.testing.TestService/FullDuplexCall")), 2, bidiIn, 2, bidiOut)
}

func one(t *testing.T, rs []*audit.Record) *audit.Record {
	t.Helper()
	if len(rs) != 1 {
		t.Fatalf("%d records, want 1", len(rs))
	}
	return rs[0]
}

const streamOutMethod = "/grpc.testing.TestService/StreamingOutputCall"

// volumeRule bounds automation's StreamingOutputCall responses to a burst of
// 100 bytes refilling at 10 bytes a second.
const volumeRule = `rate_limits:
  - match: { kind: automation, method: "` + streamOutMethod + `" }
    unit: response_bytes
    rps: 10
    burst: 100
`

// TestResponseBytesLimit: a response_bytes rule ends a server-streaming call
// mid-stream with RESOURCE_EXHAUSTED naming the rule, having sent at most one
// message past the bucket; the outcome record says so; the principal's next
// call is refused before it reaches the backend until the bucket refills;
// another principal is unaffected.
func TestResponseBytesLimit(t *testing.T) {
	clk := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	env := proxytest.Start(t, proxytest.Options{Proxy: func(o *proxy.Options) { o.Now = clk.Now }, Extra: volumeRule})
	c := env.Dial(t, proxytest.DeployerID)
	size := proto.Size(outBody(40)) // 44 bytes: 100 → 56 → 12 → -32, then empty

	got, tr, err := streamOut(t, c, 40, 40, 40, 40, 40)
	proxytest.WantCode(t, "StreamingOutputCall over its volume", err, codes.ResourceExhausted,
		"response volume limit rate_limits[0] for "+proxytest.DeployerID+" (response_bytes)")
	if len(got) != 3 {
		t.Fatalf("received %d messages, want 3 (the third takes the bucket below zero, the fourth finds it empty)", len(got))
	}
	if p := tr.Get("grpc-retry-pushback-ms"); len(p) != 1 || p[0] != "3300" {
		t.Errorf("pushback = %q, want 3300 (33 bytes of debt at 10/s)", p)
	}
	out := one(t, outcomes(t, env, streamOutMethod))
	if out.Code != "RESOURCE_EXHAUSTED" || !strings.Contains(out.Detail, "rate_limits[0]") || out.MessagesOut != 3 || out.BytesOut != uint64(3*size) {
		t.Errorf("outcome = code %s detail %q messages_out %d bytes_out %d; want RESOURCE_EXHAUSTED naming rate_limits[0], 3, %d",
			out.Code, out.Detail, out.MessagesOut, out.BytesOut, 3*size)
	}

	// The next call is refused at its request: the backend never runs it.
	calls := env.Backend.Calls.Load()
	_, _, err = streamOut(t, c, 1)
	proxytest.WantCode(t, "next call while the bucket is empty", err, codes.ResourceExhausted, "rate_limits[0]")
	if n := env.Backend.Calls.Load(); n != calls {
		t.Errorf("the refused call reached the backend")
	}
	reqs := env.Requests(t, streamOutMethod)
	if last := reqs[len(reqs)-1]; last.Decision != audit.DecisionRatelimited {
		t.Errorf("refused call's decision = %s, want ratelimited", last.Decision)
	}

	// Another principal has a bucket of its own.
	if got, _, err := streamOut(t, env.Dial(t, otherBotID), 40, 40); err != nil || len(got) != 2 {
		t.Fatalf("other principal: %d messages, %v", len(got), err)
	}

	// Still short by a hair before the announced time; served after it.
	clk.Advance(3299 * time.Millisecond)
	if _, _, err := streamOut(t, c, 1); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("call 1ms before the refill: %v, want RESOURCE_EXHAUSTED", err)
	}
	clk.Advance(time.Millisecond)
	if got, _, err := streamOut(t, c, 1); err != nil || len(got) != 1 {
		t.Fatalf("call after the refill: %d messages, %v", len(got), err)
	}
}

// TestResponseLargerThanBurst: one response message larger than the rule's
// burst is never sent, even from a full bucket, and waiting will not help.
func TestResponseLargerThanBurst(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Extra: volumeRule})
	c := env.Dial(t, proxytest.DeployerID)
	got, tr, err := streamOut(t, c, 200)
	proxytest.WantCode(t, "a message over the burst", err, codes.ResourceExhausted, "exceeds its burst of 100")
	if len(got) != 0 {
		t.Errorf("received %d messages, want none", len(got))
	}
	if p := tr.Get("grpc-retry-pushback-ms"); len(p) != 1 || p[0] != "-1" {
		t.Errorf("pushback = %q, want -1", p)
	}
	// The refused message was not charged: the bucket is full for one that fits.
	if got, _, err := streamOut(t, c, 90); err != nil || len(got) != 1 {
		t.Fatalf("a message within the burst: %d messages, %v", len(got), err)
	}
}

// TestResponseMessagesLimit: unit response_messages counts messages, whatever
// their size, and leaves methods the rule does not match alone.
func TestResponseMessagesLimit(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Extra: `rate_limits:
  - match: { method: "` + streamOutMethod + `" }
    unit: response_messages
    rps: 0.001
    burst: 2
`})
	c := env.Dial(t, proxytest.DeployerID)
	got, _, err := streamOut(t, c, 1, 100000, 1, 1)
	proxytest.WantCode(t, "third message", err, codes.ResourceExhausted, "(response_messages)")
	if len(got) != 2 {
		t.Errorf("received %d messages, want 2", len(got))
	}
	// A bidi call is not matched by the rule.
	bidi, err := c.FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if err := bidi.Send(&testgrpc.StreamingOutputCallRequest{}); err != nil {
			t.Fatal(err)
		}
		if _, err := bidi.Recv(); err != nil {
			t.Fatalf("bidi call under no rule: %v", err)
		}
	}
	if err := bidi.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := bidi.Recv(); !errors.Is(err, io.EOF) {
		t.Fatalf("bidi end: %v", err)
	}
}

// TestResponseVolumeBreakglassBypass: a response-volume rule with
// breakglass_bypass does not meter a call made under an active grant covering
// it, and meters the same principal's calls without one.
func TestResponseVolumeBreakglassBypass(t *testing.T) {
	env := proxytest.Start(t, proxytest.Options{Extra: `breakglass:
  max_duration: 1h
  approvals_required: 0
rate_limits:
  - match: { kind: human, method: "` + streamOutMethod + `" }
    unit: response_bytes
    rps: 1
    burst: 100
    breakglass_bypass: true
`})
	alice := env.Dial(t, proxytest.AliceID)
	if _, _, err := streamOut(t, alice, 200); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("without a grant: %v, want RESOURCE_EXHAUSTED", err)
	}
	bg := ztpv1.NewBreakGlassClient(env.Conn(t, proxytest.AliceID))
	if _, err := bg.RequestGrant(proxytest.Ctx(t), &ztpv1.RequestGrantRequest{Reason: "INC-1 read it all", Scope: []string{streamOutMethod}}); err != nil {
		t.Fatal(err)
	}
	if got, _, err := streamOut(t, alice, 200, 200); err != nil || len(got) != 2 {
		t.Fatalf("under a grant: %d messages, %v", len(got), err)
	}
}
