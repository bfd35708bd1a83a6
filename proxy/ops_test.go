package proxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"

	"github.com/ztp-dev/ztp/proxy/proxytest"
)

func scrape(t *testing.T, e *proxytest.Env, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	e.Server.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestMetricsAfterTraffic(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	c := e.Dial(t, proxytest.DeployerID)
	for range 3 {
		if _, err := c.UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	_, err := e.Dial(t, proxytest.AliceID).UnaryCall(proxytest.Ctx(t), &testgrpc.SimpleRequest{})
	proxytest.WantCode(t, "UnaryCall as alice", err, codes.PermissionDenied, "")
	e.Records(t) // waits for outcome records

	code, body := scrape(t, e, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`ztp_decisions_total{decision="allow",method="/grpc.testing.TestService/UnaryCall",upstream="test"} 3`,
		`ztp_decisions_total{decision="deny",method="/grpc.testing.TestService/UnaryCall",upstream="test"} 1`,
		`ztp_calls_total{code="OK",method="/grpc.testing.TestService/UnaryCall",upstream="test"} 3`,
		`ztp_calls_total{code="PERMISSION_DENIED",method="/grpc.testing.TestService/UnaryCall",upstream="test"} 1`,
		`ztp_audit_records_total 8`, // 4 requests + 4 outcomes
		`ztp_audit_append_errors_total 0`,
		`ztp_forwarded_call_seconds_count{upstream="test"} 3`,
		`ztp_policy_eval_seconds_count 4`,
		`ztp_inflight_calls 0`,
		`ztp_policy_info{mode="enforce",version="sha256:`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	// Every record went through a group commit: 8 from the calls, plus the
	// proxy's own "started" record.
	var committed float64
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, "ztp_audit_commit_records_sum "); ok {
			committed, _ = strconv.ParseFloat(v, 64)
		}
	}
	if committed < 9 || !strings.Contains(body, "ztp_audit_commit_seconds_count ") {
		t.Errorf("/metrics: records in group commits = %v, want at least 9, and ztp_audit_commit_seconds", committed)
	}
	if code, body := scrape(t, e, "/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("/healthz = %d %q", code, body)
	}
}

// TestPprofOnlyWhenConfigured: the profiler is served only with metrics.pprof.
func TestPprofOnlyWhenConfigured(t *testing.T) {
	off := proxytest.Start(t, proxytest.Options{})
	if code, _ := scrape(t, off, "/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without metrics.pprof = %d, want 404", code)
	}
	on := proxytest.Start(t, proxytest.Options{Extra: "metrics:\n  pprof: true\n"})
	code, body := scrape(t, on, "/debug/pprof/")
	if code != http.StatusOK || !strings.Contains(body, "goroutine") {
		t.Errorf("/debug/pprof/ with metrics.pprof = %d %.80q, want 200 with the profile index", code, body)
	}
	if code, _ := scrape(t, on, "/metrics"); code != http.StatusOK {
		t.Errorf("/metrics with metrics.pprof = %d", code)
	}
}

// TestReadinessFollowsAudit: /readyz and the gRPC health service turn unready
// within a few seconds of the audit log becoming unwritable, with no traffic.
func TestReadinessFollowsAudit(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{})
	if code, body := scrape(t, e, "/readyz"); code != 200 || !strings.Contains(body, `"ready":true`) {
		t.Fatalf("/readyz before = %d %s, want 200 ready", code, body)
	}
	hc := healthpb.NewHealthClient(e.Conn(t, proxytest.DeployerID))
	if r, err := hc.Check(proxytest.Ctx(t), &healthpb.HealthCheckRequest{}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check before = %v, %v; want SERVING", r, err)
	}
	e.Server.AuditStore().Close()
	waitFor(t, 10*time.Second, func() bool { ok, _ := e.Server.Ready(); return !ok })
	code, body := scrape(t, e, "/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"audit"`) {
		t.Errorf("/readyz after audit closed = %d %s, want 503 naming audit", code, body)
	}
	// The health service itself needs the audit log (every call is audited), so a
	// probe now fails closed with UNAVAILABLE rather than answering SERVING.
	_, err := hc.Check(proxytest.Ctx(t), &healthpb.HealthCheckRequest{})
	proxytest.WantCode(t, "health Check after", err, codes.Unavailable, "audit")
}

func TestUpstreamDownAndSlow(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Limits: "  max_unary_deadline: 300ms\n"})
	c := e.Dial(t, proxytest.DeployerID)

	// Slow: the configured maximum deadline ends a call the client left open.
	start := time.Now()
	_, err := c.UnaryCall(context.Background(), &testgrpc.SimpleRequest{Payload: &testgrpc.Payload{Body: []byte("hang")}})
	proxytest.WantCode(t, "UnaryCall to a hanging upstream", err, codes.DeadlineExceeded, "")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("hanging call took %v to fail", d)
	}

	// Down: a clear UNAVAILABLE naming the upstream, and readiness notices.
	e.Backend.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.UnaryCall(ctx, &testgrpc.SimpleRequest{})
	proxytest.WantCode(t, "UnaryCall to a stopped upstream", err, codes.Unavailable, "ztp: upstream test")
	waitFor(t, 10*time.Second, func() bool {
		ok, checks := e.Server.Ready()
		return !ok && strings.Contains(checks["upstreams"], "upstream test")
	})
}

// TestAbuseLimits: one client exhausting its per-connection stream limit or
// sending oversized headers does not stop other callers.
func TestAbuseLimits(t *testing.T) {
	e := proxytest.Start(t, proxytest.Options{Limits: "  max_concurrent_streams: 2\n  max_header_bytes: 2048\n"})
	greedy := e.Dial(t, proxytest.DeployerID)
	for range 2 {
		s, err := greedy.FullDuplexCall(proxytest.Ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		s.Send(&testgrpc.StreamingOutputCallRequest{})
		if _, err := s.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := greedy.EmptyCall(ctx, &testgrpc.Empty{})
	proxytest.WantCode(t, "third stream on a full connection", err, codes.DeadlineExceeded, "")

	before := e.Backend.Calls.Load()
	big := metadata.AppendToOutgoingContext(proxytest.Ctx(t), "x-big", strings.Repeat("a", 4096))
	if _, err := e.Dial(t, proxytest.DeployerID).EmptyCall(big, &testgrpc.Empty{}); err == nil {
		t.Error("call with 4 KiB of metadata succeeded, want it refused (max_header_bytes 2048)")
	}
	if n := e.Backend.Calls.Load() - before; n != 0 {
		t.Errorf("backend handled %d oversized-header calls, want 0", n)
	}

	if _, err := e.Dial(t, proxytest.DeployerID).EmptyCall(proxytest.Ctx(t), &testgrpc.Empty{}); err != nil {
		t.Errorf("another caller's EmptyCall = %v, want served", err)
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v", d)
		}
		time.Sleep(20 * time.Millisecond) // polling an external condition, not synchronising
	}
}
