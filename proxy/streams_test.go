package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/ztp-dev/ztp/audit"
	"github.com/ztp-dev/ztp/internal/testclock"
	"github.com/ztp-dev/ztp/proxy"
	"github.com/ztp-dev/ztp/proxy/proxytest"
)

const otherBotID = "spiffe://example.org/ns/prod/sa/other"

// withTimers makes clk the proxy's clock and its timers' clock.
func withTimers(clk *testclock.Clock) func(*proxy.Options) {
	return func(o *proxy.Options) {
		o.Now = clk.Now
		o.AfterFunc = clk.AfterFunc
	}
}

// metric returns the value of one sample line of /metrics ("" when absent).
func metric(t *testing.T, e *proxytest.Env, sample string) string {
	t.Helper()
	_, body := scrape(t, e, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			return v
		}
	}
	return ""
}

// echoOnce sends one message on a FullDuplexCall and waits for its echo: the
// stream is then open end to end.
func echoOnce(t *testing.T, s testgrpc.TestService_FullDuplexCallClient) error {
	t.Helper()
	if err := s.Send(&testgrpc.StreamingOutputCallRequest{Payload: &testgrpc.Payload{Body: []byte("x")}}); err != nil && !errors.Is(err, io.EOF) {
		return err // io.EOF: the call ended; Recv says how
	}
	_, err := s.Recv()
	return err
}

// reasonsStarting counts the request records whose one reason starts with prefix.
func reasonsStarting(recs []*audit.Record, prefix string) (n int) {
	for _, r := range recs {
		if r.Type == audit.TypeRequest && len(r.Reasons) == 1 && strings.HasPrefix(r.Reasons[0], prefix) {
			n++
		}
	}
	return n
}

// TestIdleStreamsEndedAtFirstMessageTimeout: streams that never send a
// message are ended DEADLINE_EXCEEDED at limits.first_message_timeout,
// counted, and audited within the refusal budget (10 records for the host,
// the rest in a summary); the upstream never hears of them, and a stream
// that sent its first message stays open however long it then idles.
func TestIdleStreamsEndedAtFirstMessageTimeout(t *testing.T) {
	clk := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	e := proxytest.Start(t, proxytest.Options{Proxy: withTimers(clk)})
	c := e.Dial(t, proxytest.DeployerID)

	active, err := c.FullDuplexCall(proxytest.Ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := echoOnce(t, active); err != nil {
		t.Fatalf("active stream: %v", err)
	}
	const idle = 25
	// Every call also has a timer at its certificate's expiry (expiry.go), far
	// away; each idle stream adds that one and its first-message timer.
	base := clk.Pending()
	streams := make([]testgrpc.TestService_FullDuplexCallClient, idle)
	for i := range streams {
		if streams[i], err = c.FullDuplexCall(proxytest.Ctx(t)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 20*time.Second, func() bool { return clk.Pending() == base+2*idle })

	clk.Advance(10*time.Second - time.Nanosecond)
	if n := clk.Pending(); n != base+2*idle {
		t.Fatalf("%d timers armed just before the timeout, want %d", n, base+2*idle)
	}
	clk.Advance(time.Nanosecond)
	for i, s := range streams {
		_, err := s.Recv()
		proxytest.WantCode(t, fmt.Sprintf("Recv on idle stream %d", i), err, codes.DeadlineExceeded, "ztp: no request message within 10s of the call's start (limits.first_message_timeout)")
	}

	// The interceptors record after the client got its status: wait for all
	// of them before the clock moves on (a new window would take more records).
	idleRecords := func() int {
		return reasonsStarting(e.Records(t), "no request message within 10s (limits.first_message_timeout): call ended")
	}
	waitFor(t, 20*time.Second, func() bool {
		return metric(t, e, "ztp_streams_unrecorded_total") == fmt.Sprint(idle-10) && idleRecords() == 10
	})

	clk.Advance(time.Hour) // a stream past its first message may idle as long as it likes
	if err := echoOnce(t, active); err != nil {
		t.Errorf("active stream after an idle hour: %v", err)
	}
	if n := e.Backend.Calls.Load(); n != 1 {
		t.Errorf("backend saw %d calls, want only the active one", n)
	}
	if v := metric(t, e, `ztp_streams_ended_early_total{reason="first_message_timeout"}`); v != fmt.Sprint(idle) {
		t.Errorf("ztp_streams_ended_early_total{first_message_timeout} = %q, want %d", v, idle)
	}
	if v := metric(t, e, "ztp_streams_unrecorded_total"); v != fmt.Sprint(idle-10) {
		t.Errorf("ztp_streams_unrecorded_total = %q, want %d", v, idle-10)
	}
	e.Server.Pipeline().FlushRefusals(proxytest.Ctx(t), true)
	recs := e.Records(t)
	if n := reasonsStarting(recs, "no request message within 10s (limits.first_message_timeout): call ended"); n != 10 {
		t.Errorf("%d records of idle streams ended, want 10 (the refusal budget of one host)", n)
	}
	for _, r := range recs {
		if r.Type == audit.TypeRequest && len(r.Reasons) == 1 && strings.HasPrefix(r.Reasons[0], "no request message") &&
			(r.Principal == nil || r.Principal.ID != proxytest.DeployerID || r.Decision != audit.DecisionDeny || r.Method != "/grpc.testing.TestService/FullDuplexCall") {
			t.Errorf("idle stream record %+v; want the deployer's FullDuplexCall, denied", r)
		}
	}
	if n := reasonsStarting(recs, fmt.Sprintf("%d more calls from 127.0.0.1 ended before their first request message", idle-10)); n != 1 {
		t.Errorf("%d summary records of the other %d idle streams, want 1", n, idle-10)
	}
}

// TestCancelledBeforeFirstMessageLeavesTrace: streams a client cancels
// before sending anything are counted and audited (within the budget).
func TestCancelledBeforeFirstMessageLeavesTrace(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	c := e.Dial(t, proxytest.DeployerID)
	const n = 40
	for range n {
		ctx, cancel := context.WithCancel(proxytest.Ctx(t))
		if _, err := c.FullDuplexCall(ctx); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 20*time.Second, func() bool { return metric(t, e, "ztp_inflight_calls") == "1" })
		cancel()
		waitFor(t, 20*time.Second, func() bool { return metric(t, e, "ztp_inflight_calls") == "0" })
	}
	waitFor(t, 20*time.Second, func() bool {
		return metric(t, e, `ztp_streams_ended_early_total{reason="client_cancelled"}`) == fmt.Sprint(n) &&
			metric(t, e, "ztp_streams_unrecorded_total") == fmt.Sprint(n-10)
	})
	cancelled := func() (out []*audit.Record) {
		for _, r := range e.Records(t) {
			if r.Type == audit.TypeOutcome && r.Detail == "the client ended the call before its first request message" {
				out = append(out, r)
			}
		}
		return out
	}
	waitFor(t, 20*time.Second, func() bool { return len(cancelled()) >= 10 })
	recs := cancelled()
	recorded := len(recs)
	for _, r := range recs {
		if r.Code != "CANCELLED" || r.Principal == nil || r.Principal.ID != proxytest.DeployerID || r.Ref != 0 {
			t.Errorf("cancelled stream record %+v; want CANCELLED, the deployer, no decision to refer to", r)
		}
	}
	if recorded != 10 {
		t.Errorf("%d records of cancelled streams, want 10 (the rest in the summary)", recorded)
	}
	if e.Backend.Calls.Load() != 0 {
		t.Errorf("backend saw %d calls, want 0", e.Backend.Calls.Load())
	}
}

// TestStreamsPerPrincipal: a principal has at most max_streams_per_principal
// calls open over all its connections; the next is refused, counted and
// audited; another principal is unaffected; a slot is free again when a
// call ends, and every slot is released exactly once under heavy churn
// (concurrent opens, cancellations before and after the first message,
// refusals).
func TestStreamsPerPrincipal(t *testing.T) {
	const max = 8
	e := proxytest.Start(t, proxytest.Options{Limits: fmt.Sprintf("  max_streams_per_principal: %d\n", max)})
	conns := []testgrpc.TestServiceClient{e.Dial(t, proxytest.DeployerID), e.Dial(t, proxytest.DeployerID)}

	open := func(c testgrpc.TestServiceClient) (testgrpc.TestService_FullDuplexCallClient, context.CancelFunc, error) {
		ctx, cancel := context.WithCancel(proxytest.Ctx(t))
		s, err := c.FullDuplexCall(ctx)
		if err == nil {
			err = echoOnce(t, s)
		}
		if err != nil {
			cancel()
		}
		return s, cancel, err
	}
	// Two anchors stay open throughout; the churn must leave their slots counted.
	var cancels []context.CancelFunc
	for i := range 2 {
		_, cancel, err := open(conns[i])
		if err != nil {
			t.Fatalf("anchor %d: %v", i, err)
		}
		cancels = append(cancels, cancel)
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var refused int
	for i := range 200 {
		wg.Go(func() {
			ctx, cancel := context.WithCancel(proxytest.Ctx(t))
			defer cancel()
			s, err := conns[i%2].FullDuplexCall(ctx)
			if err != nil {
				t.Error(err)
				return
			}
			switch i % 4 {
			case 0: // cancelled before its first message
				cancel()
			case 1: // cancelled mid-stream
				err = echoOnce(t, s)
				cancel()
			case 2: // half-closed after one message: ends normally
				if err = echoOnce(t, s); err == nil {
					s.CloseSend()
					_, err = s.Recv()
					if errors.Is(err, io.EOF) {
						err = nil
					}
				}
			case 3: // unary
				_, err = conns[i%2].EmptyCall(ctx, &testgrpc.Empty{})
			}
			if err != nil {
				mu.Lock()
				defer mu.Unlock()
				if !strings.Contains(err.Error(), "limits.max_streams_per_principal") {
					t.Errorf("call %d: %v", i, err)
				}
				refused++
			}
		})
	}
	wg.Wait()
	t.Logf("%d of 200 churning calls refused at the bound", refused)

	// Exactly max-2 more fit beside the anchors, whichever connection.
	for i := range max - 2 {
		_, cancel, err := open(conns[i%2])
		if err != nil {
			t.Fatalf("stream %d of %d after the churn: %v", i+3, max, err)
		}
		cancels = append(cancels, cancel)
	}
	_, _, err := open(conns[0])
	proxytest.WantCode(t, "stream over the bound", err, codes.ResourceExhausted,
		fmt.Sprintf("ztp: %s has %d calls open, the most limits.max_streams_per_principal allows", proxytest.DeployerID, max))
	_, _, err = open(conns[1])
	proxytest.WantCode(t, "stream over the bound on the other connection", err, codes.ResourceExhausted, "limits.max_streams_per_principal")

	// Another principal is unaffected.
	other := e.Dial(t, otherBotID)
	if _, cancel, err := open(other); err != nil {
		t.Errorf("another principal's stream: %v", err)
	} else {
		cancels = append(cancels, cancel)
	}

	// One ends: one more fits, and no more.
	cancels[0]()
	waitFor(t, 20*time.Second, func() bool {
		_, cancel, err := open(conns[0])
		if err == nil {
			cancels = append(cancels, cancel)
		}
		return err == nil
	})
	_, _, err = open(conns[0])
	proxytest.WantCode(t, "stream over the bound after one ended and was replaced", err, codes.ResourceExhausted, "limits.max_streams_per_principal")
	for _, cancel := range cancels {
		cancel()
	}
	waitFor(t, 20*time.Second, func() bool { return metric(t, e, "ztp_inflight_calls") == "0" })

	recs := e.Records(t)
	var limited int
	for _, r := range recs {
		if r.Type == audit.TypeRequest && r.Decision == audit.DecisionRatelimited && len(r.Reasons) == 1 && strings.HasPrefix(r.Reasons[0], "limits.max_streams_per_principal") {
			limited++
		}
	}
	if limited == 0 || limited > 10 {
		t.Errorf("%d records of refusals at the bound, want 1..10 (the refusal budget)", limited)
	}
	if v := metric(t, e, `ztp_streams_ended_early_total{reason="max_streams_per_principal"}`); v == "" || v == "0" {
		t.Errorf("ztp_streams_ended_early_total{max_streams_per_principal} = %q, want the refusals counted", v)
	}
}

// TestIdleUnaryControlCall: a unary control-API call whose request never
// comes (headers only, sent by hand over HTTP/2: gRPC clients always send
// the request) is ended DEADLINE_EXCEEDED at the timeout too, although gRPC
// reads a unary request before any interceptor runs, and is audited.
func TestIdleUnaryControlCall(t *testing.T) {
	clk := testclock.New(time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC))
	e := proxytest.Start(t, proxytest.Options{Proxy: withTimers(clk)})
	// HTTP/2 only, as gRPC speaks it.
	protocols := new(http.Protocols)
	protocols.SetHTTP2(true)
	tr := &http.Transport{TLSClientConfig: e.ClientTLS(t, proxytest.AliceID), Protocols: protocols}
	t.Cleanup(tr.CloseIdleConnections)
	body, never := io.Pipe()
	t.Cleanup(func() { never.Close() })
	req, err := http.NewRequestWithContext(proxytest.Ctx(t), http.MethodPost, "https://"+e.Addr+"/ztp.v1.Policy/Version", body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("content-type", "application/grpc")
	req.Header.Set("te", "trailers")
	got := make(chan *http.Response, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Errorf("RoundTrip: %v", err)
		}
		got <- resp
	}()
	waitFor(t, 20*time.Second, func() bool { return clk.Pending() == 1 })
	clk.Advance(10 * time.Second)
	resp := <-got
	if resp == nil {
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	code := resp.Header.Get("grpc-status") + resp.Trailer.Get("grpc-status")
	if code != fmt.Sprint(int(codes.DeadlineExceeded)) {
		t.Errorf("grpc-status %q (headers %v, trailers %v), want %d (DEADLINE_EXCEEDED)", code, resp.Header, resp.Trailer, codes.DeadlineExceeded)
	}
	if v := metric(t, e, `ztp_streams_ended_early_total{reason="first_message_timeout"}`); v != "1" {
		t.Errorf("ztp_streams_ended_early_total{first_message_timeout} = %q, want 1", v)
	}
	var found bool
	for _, r := range e.Records(t) {
		if r.Type == audit.TypeRequest && r.Method == "/ztp.v1.Policy/Version" {
			found = r.Decision == audit.DecisionDeny && len(r.Reasons) == 1 && strings.HasPrefix(r.Reasons[0], "no request message within 10s") && r.Principal == nil && r.Peer != ""
			if !found {
				t.Errorf("record %+v; want a denial for the missing request, with the peer", r)
			}
		}
	}
	if !found {
		t.Error("no record of the idle control call")
	}
}

// TestControlStreamsCount: streaming control-API calls (here gRPC health
// watches, which a client may hold for ever) count against the principal's
// bound too; unary control calls, which end by themselves, do not.
func TestControlStreamsCount(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Limits: "  max_streams_per_principal: 2\n"})
	health := healthpb.NewHealthClient(e.Conn(t, proxytest.AliceID))
	for i := range 2 {
		w, err := health.Watch(proxytest.Ctx(t), &healthpb.HealthCheckRequest{})
		if err == nil {
			_, err = w.Recv()
		}
		if err != nil {
			t.Fatalf("health watch %d: %v", i+1, err)
		}
	}
	w, err := health.Watch(proxytest.Ctx(t), &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = w.Recv()
	}
	proxytest.WantCode(t, "third health watch", err, codes.ResourceExhausted, "limits.max_streams_per_principal")
	if _, err := health.Check(proxytest.Ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("unary health check at the bound: %v", err)
	}
}
